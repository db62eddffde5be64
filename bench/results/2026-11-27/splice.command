python3 bench/writer/splice_bench.py --dir /tmp --bytes 1073741824 --repeat 3
