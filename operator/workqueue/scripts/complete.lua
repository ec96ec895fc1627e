-- complete: ARGV now, then item, token pairs. Returns {item, reason, ...} of refusals.
return notify_if(#ARGV > 1, complete_pairs(2, clock(ARGV[1])))
