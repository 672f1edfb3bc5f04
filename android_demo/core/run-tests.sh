#!/usr/bin/env bash
# Compiles the JVM core and its tests with javac and runs them with JUnit 4: no Gradle, no
# network beyond Debian's package mirror, only a JDK 17+ and Debian's junit4 package.
#
# On a fresh Debian/Ubuntu machine without javac or JUnit it installs them first
# (apt-get install -y default-jdk-headless junit4, through sudo when not root); when they are
# present it installs nothing. Works from any directory; build output goes to
# android_demo/core/build/javac. Exits non-zero on a compile error or a failing test.
#
# Environment: JUNIT_JAR and HAMCREST_JAR override the jar locations (then nothing is installed
# for them); POCKETREC_NO_INSTALL=1 reports what is missing instead of installing it.
set -euo pipefail

core="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
junit="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
hamcrest="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"

fail() {
  echo "run-tests.sh: $*" >&2
  exit 2
}

# Runs a command as root: directly when root already, otherwise through sudo.
as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  else
    command -v sudo > /dev/null || fail "need root to install packages; run as root or install sudo"
    sudo "$@"
  fi
}

# Installs Debian packages without prompts.
install_packages() {
  if [[ "${POCKETREC_NO_INSTALL:-0}" == 1 ]]; then
    fail "missing: $*; install them with: apt-get install -y $*"
  fi
  command -v apt-get > /dev/null || fail "missing: $*, and apt-get is not available to install them"
  echo "run-tests.sh: installing $* (apt-get)" >&2
  # Fresh containers often have no package lists yet: update only when the first try fails.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    || { as_root apt-get update \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; }
}

missing=()
command -v javac > /dev/null || missing+=(default-jdk-headless)
if [[ ! -f "$junit" || ! -f "$hamcrest" ]] && [[ -z "${JUNIT_JAR:-}${HAMCREST_JAR:-}" ]]; then
  missing+=(junit4) # depends on libhamcrest-java, which provides hamcrest-core.jar
fi
if ((${#missing[@]})); then
  install_packages "${missing[@]}"
fi

command -v javac > /dev/null || fail "javac not found after installing default-jdk-headless"
major="$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')"
[[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] \
  || fail "javac $major is too old; the core needs JDK 17+ (apt-get install -y openjdk-17-jdk-headless)"
for jar in "$junit" "$hamcrest"; do
  [[ -f "$jar" ]] || fail "$jar not found; install JUnit 4 (apt-get install -y junit4) or set JUNIT_JAR and HAMCREST_JAR"
done

build="$core/build/javac"
rm -rf "$build"
mkdir -p "$build/main" "$build/test"
mapfile -t main_sources < <(find "$core/src/main/java" -name '*.java' | sort)
mapfile -t test_sources < <(find "$core/src/test/java" -name '*.java' | sort)
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -d "$build/main" "${main_sources[@]}"
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -d "$build/test" \
  -cp "$build/main:$junit:$hamcrest" "${test_sources[@]}"

mapfile -t tests < <(cd "$build/test" && find . -name '*Test.class' ! -name '*$*' \
  | sed -e 's|^\./||' -e 's|\.class$||' -e 's|/|.|g' | sort)
java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Djava.util.logging.config.file="$core/src/test/resources/logging.properties" \
  -cp "$build/main:$build/test:$core/src/test/resources:$junit:$hamcrest" \
  org.junit.runner.JUnitCore "${tests[@]}"
