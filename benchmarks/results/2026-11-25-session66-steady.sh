#!/bin/bash
# usage: steady.sh BIN — make-run config, scrape every 5 s for 130 s (the runtime's forced GC runs in between), RSS at the end
BIN=$1
cd /work/main
PROXY_MODE=dedicated PROXY_WORKLOAD_INFO=default/app/app XDS_ADDRESS= CA_ADDRESS= FAKE_CA=true LOCAL_XDS_PATH=examples/local.yaml $BIN proxy ztunnel > /tmp/s66/zt-$$.log 2>&1 &
PID=$!
sleep 4
a=$(grep -E "VmRSS|RssFile|RssAnon" /proc/$PID/status | awk '{print $2}' | tr '\n' ' ')
for i in $(seq 26); do curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:15020/metrics -o /dev/null; sleep 5; done
b=$(grep -E "VmRSS|RssFile|RssAnon" /proc/$PID/status | awk '{print $2}' | tr '\n' ' ')
echo "$(basename $BIN) idle[rss anon file]=$a after26scrapes=$b"
kill $PID; wait $PID 2>/dev/null
