# Where the project's virtual environment lives (sourced by the other scripts).
# It is outside the source tree on purpose: CMake refuses to export targets whose
# include directories (numpy's, inside the venv) lie in the package's source directory.
CFI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
CFI_VENV="${CFI_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/cfi_pose_ros/venv-py311}"
export CFI_ROOT CFI_VENV
