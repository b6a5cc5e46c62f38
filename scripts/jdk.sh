# Sourced by the project's scripts: finds a JDK 25 or newer and exports JAVA_HOME.
# JAVA_HOME wins if it is 25 or newer; otherwise the first /usr/lib/jvm/*25* that works.
iopersist_java_major() {
    "$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}
iopersist_find_jdk() {
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        local major
        major=$(iopersist_java_major "$JAVA_HOME")
        if [ -n "$major" ] && [ "$major" -ge 25 ]; then
            return 0
        fi
    fi
    local candidate
    for candidate in /usr/lib/jvm/*25*; do
        if [ -x "$candidate/bin/java" ] && [ -x "$candidate/bin/javac" ]; then
            export JAVA_HOME="$candidate"
            return 0
        fi
    done
    echo "iopersist: no JDK 25 found: set JAVA_HOME to a JDK 25 or install one under /usr/lib/jvm (e.g. temurin-25-jdk)." >&2
    return 1
}
iopersist_need_maven() {
    if ! command -v mvn >/dev/null 2>&1; then
        echo "iopersist: Maven (mvn) is not installed: install it, e.g. 'apt-get install maven'." >&2
        return 1
    fi
}
