#!/bin/bash
# compare.sh: base and new query services on the seed db, same answers?
URL=$(cat /tmp/qh/url)
PA=$((30000 + RANDOM % 5000)); PB=$((35000 + RANDOM % 5000))
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PA /tmp/qbase/bin/query-service >/tmp/qh/cmpA.log 2>&1 & A=$!
DATABASE_URL=$URL AUTH=off LOG_LEVEL=warn PORT=$PB ${ROOT:-/work/w-i14-qry}/bin/query-service >/tmp/qh/cmpB.log 2>&1 & B=$!
for p in $PA $PB; do for i in $(seq 1 100); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.2; done; done
sleep 2
fail=0
chk() { # path
  curl -s -D /tmp/qh/hA http://127.0.0.1:$PA$1 -o /tmp/qh/bA; curl -s -D /tmp/qh/hB http://127.0.0.1:$PB$1 -o /tmp/qh/bB
  if ! cmp -s /tmp/qh/bA /tmp/qh/bB; then echo "DIFF body $1"; fail=1; fi
  for h in ETag X-Position; do a=$(grep -i "^$h:" /tmp/qh/hA); b=$(grep -i "^$h:" /tmp/qh/hB); [ "$a" = "$b" ] || { echo "DIFF $h $1: $a / $b"; fail=1; }; done
}
after=""
for i in $(seq 1 30); do
  chk "/events?limit=1000$after"
  next=$(jq -r .next /tmp/qh/bB); [ "$next" = null ] && break
  after="&after=$(printf %s "$next" | jq -sRr @uri)"
done
for id in $(psql "$URL" -Atc "select account_id from view_accounts order by account_id limit 20"); do
  chk "/accounts/$id"; chk "/streams/account-$id?limit=50"; chk "/accounts/$id/transactions?limit=50"
done
chk "/stats/daily"; chk "/audit/large-transactions?min_amount=1000&limit=100"
kill $A $B; wait
echo "compare done fail=$fail; $(wc -c < /tmp/qh/bB) bytes last"
