-- complete: ARGV now, pairs_json ([[item, token], ...]). Returns {item, reason, ...} of refusals.
return complete_pairs(cjson.decode(ARGV[2]))
