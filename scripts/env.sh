# Environment for working in this repository after `make setup`: the virtual environment, the
# ROS 2 prefix the PyPI wheels installed into it, and the messages `make setup` built into
# install/. Source it from the repository root (POSIX sh, bash, zsh):
#
#     . scripts/env.sh
#
# `make test` and `make demo` run with exactly this. A ROS user who built with colcon in a
# workspace uses `source install/setup.bash` instead (see README).
#
# Inputs (all optional): EGOPRESS_ROOT (repository root; default: this script's parent when
# bash or zsh can tell, else the current directory), EGOPRESS_VENV (default: $EGOPRESS_ROOT/.venv).
# A ROS distribution, if any, must be sourced before this script.

if [ -z "${EGOPRESS_ROOT:-}" ]; then
    if [ -n "${BASH_SOURCE:-}" ]; then
        EGOPRESS_ROOT=$(cd "$(dirname "${BASH_SOURCE}")/.." && pwd)
    elif [ -n "${ZSH_VERSION:-}" ]; then
        # shellcheck disable=SC2296  # zsh-only expansion: the path of the sourced file
        EGOPRESS_ROOT=$(cd "$(dirname "${(%):-%x}")/.." && pwd)
    else
        EGOPRESS_ROOT=$(pwd)
    fi
fi
if [ ! -f "$EGOPRESS_ROOT/scripts/env.sh" ]; then
    echo "scripts/env.sh: '$EGOPRESS_ROOT' is not the EgoPress repository root; source it from there or set EGOPRESS_ROOT" >&2
    return 1 2>/dev/null || exit 1
fi
EGOPRESS_VENV=${EGOPRESS_VENV:-$EGOPRESS_ROOT/.venv}
export EGOPRESS_ROOT EGOPRESS_VENV

# _egopress_prepend VARIABLE DIRECTORY: puts DIRECTORY first in the colon-separated VARIABLE,
# once (sourcing this script twice changes nothing).
_egopress_prepend() {
    eval "_egopress_value=\${$1:-}"
    case ":${_egopress_value}:" in
        *":$2:"*) ;;
        *) eval "export $1=\"\$2\${_egopress_value:+:\$_egopress_value}\"" ;;
    esac
    unset _egopress_value
}

_egopress_prepend PATH "$EGOPRESS_VENV/bin"

# The PyPI ROS wheels install a ROS prefix (share/ament_index, lib/) into the venv; with a
# sourced distribution the venv holds no ROS and the distribution's own paths stay in charge.
if [ -d "$EGOPRESS_VENV/share/ament_index" ]; then
    _egopress_prepend AMENT_PREFIX_PATH "$EGOPRESS_VENV"
    _egopress_prepend CMAKE_PREFIX_PATH "$EGOPRESS_VENV"
    _egopress_prepend LD_LIBRARY_PATH "$EGOPRESS_VENV/lib"
fi

# The messages built by `make setup` (colcon, install base install/).
_egopress_install="$EGOPRESS_ROOT/install/egopress_ros"
if [ -d "$_egopress_install" ]; then
    _egopress_prepend AMENT_PREFIX_PATH "$_egopress_install"
    _egopress_prepend CMAKE_PREFIX_PATH "$_egopress_install"
    _egopress_prepend LD_LIBRARY_PATH "$_egopress_install/lib"
    for _egopress_site in "$_egopress_install"/lib/python3*/site-packages; do
        [ -d "$_egopress_site" ] && _egopress_prepend PYTHONPATH "$_egopress_site"
    done
    unset _egopress_site
fi
unset _egopress_install

# The source tree goes before the install space, so that edits to egopress_core/ and
# egopress_ros/ take effect without rebuilding; egopress_ros/__init__.py extends its __path__
# so that the generated egopress_ros.msg is still found in the install space.
_egopress_prepend PYTHONPATH "$EGOPRESS_ROOT"

unset -f _egopress_prepend
