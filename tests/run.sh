#!/bin/sh
# tests/run.sh — run test programs, add up their closing lines.
#
# Each argument is a command (a test runner). Each runner ends with
# "N passed, N failed"; a runner that crashes or prints no such line counts
# as one failure. Closes with the sum as "N passed, N failed" and exits 1
# when anything failed.
set -u
total_p=0
total_f=0
for t in "$@"; do
	echo "== $t"
	out=$(mktemp)
	$t >"$out" 2>&1
	rc=$?
	cat "$out"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	rm -f "$out"
	if [ -z "$line" ]; then
		echo "!! $t: exit $rc without a closing line"
		total_f=$((total_f + 1))
		continue
	fi
	p=${line%% passed*}
	f=${line#*passed, }
	f=${f%% failed*}
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		echo "!! $t: exit $rc"
		f=1
	fi
	total_p=$((total_p + p))
	total_f=$((total_f + f))
done
echo "$total_p passed, $total_f failed"
[ "$total_f" = 0 ]
