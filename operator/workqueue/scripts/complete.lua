-- complete: ARGV now, then item, token pairs. Returns {item, reason, ...} of refused pairs.
check_types(2, 4, 5, 6, 8, 9, 11, 12)
return complete_pairs(2)
