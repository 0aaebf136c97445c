#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages EgoPress needs, only those missing.
#   libusb-1.0-0     open3d's CPU wheel links against it
#   cmake, g++, make message generation (rosidl) compiles C/C++ type support
#   python3-venv     the project's virtual environment (Debian splits it out of python3)
#   python3-dev      Python.h, to compile the generated messages' Python extension
# PYTHON (default python3) is the interpreter the virtual environment is made from.
set -euo pipefail

python=${PYTHON:-python3}
packages=(libusb-1.0-0 cmake g++ make)
# Debian's python3 lacks ensurepip unless python3-venv is installed, and Python.h unless
# python3-dev is; a non-Debian Python (pyenv, conda) has both built in.
if ! "$python" -c "import ensurepip" >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
if ! "$python" -c "import os, sysconfig, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" >/dev/null 2>&1; then
    packages+=(python3-dev)
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "error: missing system packages ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
