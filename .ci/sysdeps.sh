#!/usr/bin/env bash
# System libraries for offscreen MuJoCo rendering (EGL / OSMesa). Installed with apt-get when we are root;
# otherwise we say exactly what is missing and carry on (low-dim work needs none of it).
set -uo pipefail
# EGL/OSMesa for offscreen rendering; cmake and g++ build egl_probe (robomimic's source-only dependency).
pkgs=(libegl1 libgl1-mesa-dri libegl-mesa0 libosmesa6 cmake g++)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no apt-get here; offscreen rendering needs EGL or OSMesa (packages like: ${missing[*]})." >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: camera rendering needs: sudo apt-get install -y ${missing[*]} (not root, so not installed)." >&2
fi
exit 0
