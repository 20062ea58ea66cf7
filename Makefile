# kvmweb: the two commands. Everything they need is installed by scripts/setup.sh.
.PHONY: run test setup bench

## make run: set up, then run the whole stack on http://127.0.0.1:$(PORT) (Ctrl-C stops it)
run:
	bash scripts/run.sh

## make test: set up, start PostgreSQL, Redis and the lab, then lint, check and run every test layer
test:
	bash scripts/test.sh

## make setup: only install/refresh OS packages, .venv, assets, static files and migrations
setup:
	bash scripts/setup.sh

## make bench: start daphne, gunicorn and the full stack on loopback and compare them (bench/http.py --help)
bench:
	.venv/bin/python bench/http.py --compare
