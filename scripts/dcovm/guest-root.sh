# Sourced by scripts/dco-tests.sh and scripts/sysvm-tests.sh (with REPO set):
# the host tools, and the guest root in .cache/dcovm/root, built unless the
# one there carries the current stamp (scripts/dcovm/build-guest.sh
# --stamp).  On return, fd 9 holds a shared lock on the cache: runs share a
# root while no build replaces it.  Defines ROOT.
CACHE="$REPO/.cache/dcovm"
ROOT="$CACHE/root"
mkdir -p "$CACHE"

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if (( ${#missing[@]} )); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# build-guest.sh reads pyproject.toml and downloads wheels with the repo's venv
[[ -x $REPO/.venv/bin/python ]] || "$REPO/scripts/setup.sh"

exec 9>"$CACHE/lock"
flock -x 9
want="$("$REPO/scripts/dcovm/build-guest.sh" --stamp)"
have="$(head -n1 "$ROOT/.dcovm-stamp" 2>/dev/null || true)"
if [[ $want != "$have" || ${DCOVM_REBUILD:-0} == 1 ]]; then
    old="${have:0:12}"
    say "building the guest root in $ROOT (stamp ${want:0:12}, was ${old:-none})"
    start=$SECONDS
    "$REPO/scripts/dcovm/build-guest.sh" "$ROOT"
    say "guest built in $((SECONDS - start)) s"
else
    say "reusing the guest root in $ROOT (stamp ${want:0:12})"
fi
flock -s 9
