-- complete: ARGV now, durations block (see add_durations), then item, token pairs. Returns
-- {now_us, item, reason, ...}: the call's time, then refused pairs (reason '' = repeated).
local now = clock(ARGV[1])
local first = durations_end(2)
local reply = complete_pairs(first, now, ARGV[2] ~= '')
table.insert(reply, 1, us(now))
local added = add_durations(2)
return notify_if(#ARGV >= first or added, reply)
