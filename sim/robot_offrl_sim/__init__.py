"""Simulation station: robosuite tasks, scripted experts, generators, rollouts and sweeps."""
