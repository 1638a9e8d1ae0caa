# Waymark developer and CI entry points. `make test` is what .ci/run runs.
# Python-side tools (moto, cfn-lint, sam, cargo-lambda) live in .venv/, see infra/tools.sh.

SHELL := /bin/bash
SPEED ?= 60
PORT ?= 8080
VENV := .venv/bin

export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: tools lint test lambda dev soak bench deploy

tools:
	infra/tools.sh

lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/cfn-lint template.yaml
	$(VENV)/sam validate --lint --template template.yaml

# Tests run against a local moto server, which is stopped whatever the outcome;
# the test runner's exit status is kept.
test: tools lint
	infra/moto.sh start
	WAYMARK_MOTO_ENDPOINT=http://127.0.0.1:$$(cat target/moto.port) \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
	infra/test.sh; status=$$?; infra/moto.sh stop; exit $$status
	$(MAKE) lambda

# Builds the three bootstrap binaries for this machine (x86_64, the only Rust
# target here) to check that they build. The deployed arm64 ones come from `make deploy`.
lambda: tools
	PATH="$(CURDIR)/$(VENV):$$PATH" cargo lambda build --release --compiler cargo \
		--bin intake --bin engine --bin scheduler
	@ls -l target/lambda/*/bootstrap | awk '{ printf "%10d  %s\n", $$5, $$9 }'

dev:
	cargo run -p waymark-cli --release -- dev --journeys examples/journeys --speed $(SPEED) --port $(PORT)

soak:
	WAYMARK_SOAK_SEEDS=20000 cargo test --release -p waymark-shared --test faults -- --nocapture

bench:
	cargo bench -p waymark-shared
	benches/simulate.sh
	benches/load.sh
	benches/waits.sh

# Convenience only: needs AWS credentials and answers prompts. sam builds the
# arm64 binaries with cargo-lambda, which needs the aarch64-unknown-linux-gnu
# Rust target (rustup target add) and zig (the ziglang wheel that cargo-lambda's wheel pulls
# into .venv, found as .venv's python3 -m ziglang, hence the PATH).
deploy: tools
	export PATH="$(CURDIR)/$(VENV):$$PATH"; sam build --beta-features && sam deploy --guided
