-- complete: ARGV now, then item, token pairs. Returns {item, reason, ...} of refusals.
return complete_pairs(2, clock(ARGV[1]))
