#!/usr/bin/env bash
# Installs the Debian packages facekd needs, only those that are missing.
#   deps.sh        what build, test and demo need
#   deps.sh fuzz   what `make fuzz` needs besides (clang, libFuzzer, LLVM's OpenMP)
#   deps.sh mpi    what `make MPI=1` and `make test-mpi` need besides (Open MPI)
set -euo pipefail
packages=(gcc make libc6-dev libdnnl-dev libyaml-dev libcmocka-dev libjpeg62-turbo-dev libpng-dev
          zlib1g-dev libprotobuf-c-dev protobuf-c-compiler)
[ "${1:-}" = fuzz ] && packages=(clang libclang-rt-14-dev libomp-dev)
[ "${1:-}" = mpi ] && packages=(libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
