-- lease: ARGV now, worker, n, lease_seconds('' = configured)
check_types(1, 3, 4, 5, 6, 7, 9, 10, 12, 13)
return lease_items(clock(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4])
