#!/bin/sh
# tests/readme_example.sh BUILD — run the README's libstrata example in a
# fresh directory and check it prints what the README says.
set -u
dir=$(mktemp -d)
out=$("$1/readme_example" "$dir/data" 2>&1)
rm -rf "$dir"
want="version 0: 0 rows, version 1: 3 rows, version 2: 6 rows"
if [ "$out" = "$want" ] && grep -qF "It prints \`$want\`" README.md; then
	echo "ok   readme_example"
	echo "1 passed, 0 failed"
else
	echo "FAIL readme_example: printed '$out'"
	echo "0 passed, 1 failed"
	exit 1
fi
