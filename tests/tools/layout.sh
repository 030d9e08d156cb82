#!/bin/sh
# Keeps the source layout as docs/ARCHITECTURE.md describes it (issue 11); run by `make lint`.
#
# 1. No production file under src/ longer than LIMIT lines, counted up to its unit tests (the
#    first `#[cfg(test)]` line), unless its header (the leading `//!` lines) has a line
#    starting `//! Layout:` that says why. Files that are tests as a whole (declared as
#    `#[cfg(test)] mod name;`) are not production and are not counted.
# 2. One module style: a module with children is a folder with mod.rs, so no `name.rs` beside
#    a folder `name/`.
#
# Prints every problem, naming the file, and exits 1 if there is any.
set -eu

LIMIT=${LAYOUT_LIMIT:-800}
cd "$(dirname "$0")/../.."

# The files that are tests as a whole: each `#[cfg(test)]` line followed by `mod name;`,
# resolved against the declaring file (main.rs and mod.rs declare siblings; foo.rs declares
# foo/name.rs).
test_only=$(
    find src -name '*.rs' | sort | while read -r file; do
        awk -v file="$file" '
            prev ~ /^[ \t]*#\[cfg\(test\)\][ \t]*$/ && $0 ~ /^[ \t]*(pub(\([a-z]+\))? )?mod [a-z0-9_]+;/ {
                name = $0
                sub(/^[ \t]*(pub(\([a-z]+\))? )?mod /, "", name)
                sub(/;.*/, "", name)
                dir = file
                sub(/\/[^\/]*$/, "", dir)
                base = file
                sub(/^.*\//, "", base)
                if (base != "main.rs" && base != "mod.rs" && base != "lib.rs") {
                    sub(/\.rs$/, "", base)
                    dir = dir "/" base
                }
                print dir "/" name ".rs"
                print dir "/" name "/mod.rs"
            }
            { prev = $0 }
        ' "$file"
    done
)

status=0
for file in $(find src -name '*.rs' | sort); do
    if printf '%s\n' "$test_only" | grep -qx "$file"; then
        continue
    fi
    production=$(awk '/^#\[cfg\(test\)\]/ { exit } { n++ } END { print n + 0 }' "$file")
    if [ "$production" -le "$LIMIT" ]; then
        continue
    fi
    if awk '!/^\/\/!/ { exit 1 } /^\/\/! Layout:/ { found = 1; exit 0 }' "$file"; then
        continue
    fi
    echo "layout: $file has $production lines before its tests (limit $LIMIT): split it by" \
        "concern, or say why it is one file in a '//! Layout:' line of its header" >&2
    status=1
done

for file in $(find src -name '*.rs' ! -name mod.rs ! -name main.rs | sort); do
    folder=${file%.rs}
    if [ -d "$folder" ]; then
        echo "layout: $file sits beside the folder $folder/: one module style, so move it" \
            "to $folder/mod.rs" >&2
        status=1
    fi
done

if [ "$status" -eq 0 ]; then
    echo "layout: OK (no production file over $LIMIT lines; one module style)"
fi
exit "$status"
