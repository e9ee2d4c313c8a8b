#!/bin/sh
# A shared Redis with requirepass: `mke run --redis URL` takes the password
# from MKE_REDIS_PASSWORD, the run completes, the password appears in no argv,
# no log and not in the database; a wrong password is refused clearly; a URL
# with a password in it is refused.
. tests/integration/lib.sh

PASS="s3cret-$(date +%s%N)"
start_redis "requirepass $PASS"

mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [3]; c["variants"] = {"mm_student": {"model": "mm"}}'

# a password in the URL is refused before anything starts
if "$MKE" run "$T/c.json" --redis "redis://:$PASS@127.0.0.1:1/0" --run-dir "$T/x" >/dev/null 2>"$T/err0"; then
	fail "a password in --redis was accepted"
fi
grep -q "must not carry a password" "$T/err0" || fail "unclear error for a password in the URL"

# a wrong password: a clear error, no run
if MKE_REDIS_PASSWORD=wrong "$MKE" run "$T/c.json" --redis "unix://$T/redis.sock" --ranks 1 --run-dir "$T/bad" >/dev/null 2>"$T/err1"; then
	fail "a wrong password was accepted"
fi
grep -qi "password" "$T/err1" || { cat "$T/err1"; fail "no clear error for a wrong password"; }
ok "wrong password refused: $(grep -i password "$T/err1" | head -n 1)"

# the right password, from the environment
MKE_REDIS_PASSWORD=$PASS "$MKE" run "$T/c.json" --redis "unix://$T/redis.sock" --ranks 2 --run-dir "$T/run" >"$T/out" 2>"$T/err" &
pid=$!
seen=""
while kill -0 $pid 2>/dev/null; do
	ps -eo args | grep -v grep | grep -q -- "$PASS" && seen=yes
	sleep 0.2
done
wait $pid || { tail -n 20 "$T/err"; fail "run with the shared redis failed"; }
[ -z "$seen" ] || fail "the password appeared in a process's argv"
[ "$(sql "$T/run/mke.db" "select status from runs")" = done ] || fail "run not done"
if grep -rq -- "$PASS" "$T/run" "$T/out" "$T/err"; then fail "the password was written to the run directory or the output"; fi
ok "run done through the shared redis; password in no argv, log or database"
