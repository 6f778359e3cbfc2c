# tests/integration/lib.sh — the check helpers cli.sh and dml.sh share.
# Sourced after T (the scratch directory), PASS and FAIL are set.

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1"; [ -f "$T/out" ] && sed 's/^/     | /' "$T/out" | head -20; }

# run NAME WANT_STATUS WANT_TEXT CMD...: CMD's status and combined output.
run() {
	name=$1 want=$2 text=$3
	shift 3
	"$@" >"$T/out" 2>&1
	st=$?
	if [ "$st" != "$want" ]; then
		echo "     (exit $st, wanted $want)" >>"$T/out"
		bad "$name"
	elif [ -n "$text" ] && ! grep -qF -- "$text" "$T/out"; then
		echo "     (no \"$text\" in the output)" >>"$T/out"
		bad "$name"
	else
		ok "$name"
	fi
}
