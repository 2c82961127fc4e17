#!/usr/bin/env bash
# Builds the JNI library and the `securestore` CLI, compiles the Java bindings (for Java 8, as
# Android needs) and their JUnit 5 tests with javac into target/java, and runs the suite on JDK 17
# against the real library. Prints JUnit's summary and a closing "N passed, N failed" line; exits
# non-zero when a test fails or none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
junit=${JUNIT_CONSOLE:-/usr/share/java/junit-platform-console-standalone.jar}
if [ ! -f "$junit" ]; then
    echo "no JUnit console launcher at $junit: apt-get install -y junit5" >&2
    exit 1
fi

echo "== java: building the JNI library and the CLI"
# Two commands: `--bin` would limit a single command to that binary, leaving the library unbuilt.
cargo build --locked -p securestore-jni
cargo build --locked -p securestore-client --bin securestore
profile_dir=${CARGO_TARGET_DIR:-$root/target}/debug
library=$profile_dir/libsecurestore_jni.so
cli=$profile_dir/securestore

out=$root/target/java
rm -rf "$out/classes" "$out/test-classes"
mkdir -p "$out/classes" "$out/test-classes"
echo "== java: javac"
"$JAVA_HOME/bin/javac" --release 8 -Xlint:all -Xlint:-options -Werror -encoding UTF-8 \
    -d "$out/classes" $(find bindings/java/src/main -name '*.java')
"$JAVA_HOME/bin/javac" -Xlint:all -encoding UTF-8 -cp "$out/classes:$junit" \
    -d "$out/test-classes" $(find bindings/java/src/test -name '*.java')

echo "== java: JUnit 5"
set +e
"$JAVA_HOME/bin/java" \
    -Dsecurestore.library="$library" \
    -Dsecurestore.cli="$cli" \
    -Dsecurestore.classpath="$out/classes:$out/test-classes" \
    -jar "$junit" \
    --class-path "$out/classes:$out/test-classes" \
    --scan-class-path --include-classname '.*Test' \
    --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
    | tee "$out/junit.log"
status=${PIPESTATUS[0]}
set -e
passed=$(sed -n 's/^\[ *\([0-9]*\) tests successful *\]$/\1/p' "$out/junit.log")
failed=$(sed -n 's/^\[ *\([0-9]*\) tests failed *\]$/\1/p' "$out/junit.log")
echo "java: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
