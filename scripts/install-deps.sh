#!/usr/bin/env bash
# Installs what wdpool needs on a fresh Debian 12 machine.
# Quiet (one line) when everything is already there.
#
#   scripts/install-deps.sh
#
# Debian packages are checked with dpkg; only the missing ones are installed
# (apt-get update + apt-get install -y --no-install-recommends, as root).
# Not root: prints the sudo command to run and exits 1.
# Then checks the toolchains that do not come from apt: cargo, go, java.
set -euo pipefail

PACKAGES=(
  # librdkafka build (rdkafka-sys cmake-build + ssl + libz + gssapi)
  cmake build-essential pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev libsasl2-dev
  # real Kafka broker for integration tests (scripts/kafka.sh)
  maven openjdk-17-jre-headless
  # Ruby binding
  ruby ruby-dev ruby-ffi ruby-minitest ruby-connection-pool ruby-async rake
  # sanitizers / leak checks
  clang libclang-rt-14-dev valgrind
)

log() { echo "deps: $*" >&2; }

installed() {   # installed PKG: dpkg has it fully installed
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

candidate() {   # candidate PKG: version apt would install, empty if none
  local c
  c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
  [[ "$c" == "(none)" ]] && c=""
  echo "$c"
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# ------------------------------------------------------------ Debian packages

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

status=0
if ((${#missing[@]})); then
  command -v apt-get >/dev/null 2>&1 || { log "apt-get not found: install by hand: ${missing[*]}"; exit 1; }

  updated=0
  # apt-cache knows nothing before the first `apt-get update`.
  for p in "${missing[@]}"; do
    if [[ -z "$(candidate "$p")" ]]; then
      if is_root; then
        log "apt-get update"
        apt-get update -q >/dev/null
        updated=1
      fi
      break
    fi
  done

  installable=()
  for p in "${missing[@]}"; do
    if [[ -n "$(candidate "$p")" ]]; then
      installable+=("$p")
    elif is_root; then
      log "warning: no Debian package '$p' is available here; skipping it"
      status=1
    else
      # Without an update we cannot tell; let apt decide.
      installable+=("$p")
    fi
  done

  if ((${#installable[@]})); then
    if ! is_root; then
      log "missing Debian packages: ${installable[*]}"
      echo "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${installable[*]}"
      exit 1
    fi
    log "installing: ${installable[*]}"
    ((updated)) || apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${installable[@]}" >/dev/null
    for p in "${installable[@]}"; do
      installed "$p" || { log "error: $p still not installed after apt-get install"; status=1; }
    done
  fi
fi

# ------------------------------------------------------------ toolchains

# rustup and the Go tarball install outside the default PATH: look there
# too, and say so if a tool is only found there.
ORIG_PATH="$PATH"
for d in "$HOME/.cargo/bin" /usr/local/go/bin; do
  [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"
done
for t in cargo go; do
  if command -v "$t" >/dev/null 2>&1 && ! PATH="$ORIG_PATH" command -v "$t" >/dev/null 2>&1; then
    log "note: $t is in $(dirname "$(command -v "$t")"), which is not on PATH: add it"
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  log "error: cargo not found. Install Rust >= 1.80 (rustup; Debian 12's rustc is too old)"
  status=1
fi

if ! command -v go >/dev/null 2>&1; then
  log "warning: go not found. The Go binding needs Go >= 1.21 (cgo); everything else works without it"
fi

if ! command -v java >/dev/null 2>&1; then
  log "error: java not found. scripts/kafka.sh needs Java 17+ (Debian: openjdk-17-jre-headless)"
  status=1
else
  jv="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  jmajor="${jv%%.*}"
  if [[ "$jmajor" =~ ^[0-9]+$ ]] && ((jmajor < 17)); then
    log "error: java $jv is too old; Kafka 4.x needs Java 17+ (set JAVA_HOME, or update-alternatives --config java)"
    status=1
  fi
fi

# ------------------------------------------------------------ fuzzing
# make fuzz / make test-fuzz (scripts/fuzz.sh): cargo-fuzz from crates.io,
# pinned, and the nightly toolchain (cannot be installed from here: only
# said).
CARGO_FUZZ_VERSION=0.13.2
if command -v cargo >/dev/null 2>&1; then
  if ! cargo +nightly --version >/dev/null 2>&1; then
    log "error: no nightly Rust toolchain; make fuzz and make test-fuzz need it: rustup toolchain install nightly"
    status=1
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked, a few minutes)"
    if ! cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet; then
      log "error: cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked failed"
      status=1
    fi
  elif [[ "$(cargo fuzz --version)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    log "note: $(cargo fuzz --version) found; the fuzz targets are tested with $CARGO_FUZZ_VERSION"
  fi
fi

if ((status == 0)); then
  if ((${#missing[@]})); then
    echo "deps: installed ${missing[*]}; all present"
  else
    echo "deps: all present"
  fi
fi
exit "$status"
