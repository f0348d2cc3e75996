"""The ``robot-offrl`` command line: the top floor, above the library, sim and ROS.

It may import all of them (lazily, inside each command); nothing imports it (tests/ship/test_ship_floors.py).
"""
