-- lease: ARGV now, worker, n, lease_seconds('' = configured), nonce. See lease_items.
local reply = lease_items(clock(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])
return notify_if(reply[4] ~= nil, reply)
