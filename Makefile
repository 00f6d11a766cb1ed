# Two commands matter on a fresh machine: `make demo` and `make test`.
# Each creates .venv itself; nothing needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS_BIN := .tools/bin
GO_TOOLS  := $(TOOLS_BIN)/dashboard-linter $(TOOLS_BIN)/kubeconform
TOXIPROXY := $(TOOLS_BIN)/toxiproxy-server

.PHONY: demo test lint typecheck unit all-tests tools kafka-jars replay-sample golden bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,rocksdb]'
	touch $(STAMP)

## Runs the whole thing on an embedded broker until interrupted (Ctrl-C).
demo: $(STAMP)
	$(BIN)/sla-monitor demo

## Lint, type-check and the whole test suite, as CI runs it.
test: $(STAMP) lint typecheck all-tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Every test, the live ones on Tansu and on Apache Kafka included.
all-tests: $(STAMP) tools kafka-jars
	$(BIN)/pytest

## The quick loop: every test that needs no broker (`-m "not broker"`: tests/live/ is skipped,
## and so are the Kafka jars). `make test` still runs everything.
unit: $(STAMP) tools
	$(BIN)/pytest -m "not broker"

## System tools the tests use for real (Debian's packages): promtool and prometheus;
## prometheus-alertmanager (with amtool) for the end-to-end alerting test; kcat, a librdkafka
## client nobody here wrote. Then the Go linters of tools/go.mod.
tools: $(GO_TOOLS) $(TOXIPROXY)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v kcat >/dev/null \
		&& command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-alertmanager kcat; }
	@# The monthly report's screenshot test (issue 8): headless Chromium, CJK fonts for --lang zh.
	@command -v chromium >/dev/null && fc-list :lang=zh family | grep -q 'Noto Sans CJK' || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk; }
	@# The network-fault tests (issue 10): a namespace and veth (iproute2's ip), shaping (tc) and
	@# packet drops (nft); netem is not in every kernel, nf_tables is (tests/live/netns.py).
	@command -v ip >/dev/null && command -v tc >/dev/null && command -v nft >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends iproute2 nftables; }

## Grafana's dashboard-linter and kubeconform, built from the Go module proxy at the versions and
## checksums pinned in tools/go.mod and tools/go.sum, into .tools/bin (gitignored). Rebuilt only
## when the pins change. Needs Go >= 1.24 (`go install tool`).
$(GO_TOOLS) &: tools/go.mod tools/go.sum
	@command -v go >/dev/null || { echo "Go >= 1.24 is needed to build $(GO_TOOLS) (tools/go.mod)" >&2; exit 1; }
	GOBIN=$(CURDIR)/$(TOOLS_BIN) go install -C tools tool
	touch $(GO_TOOLS)

## Shopify's toxiproxy (latency and jitter for tests/live/test_network_faults.py: this kernel has
## no netem), pinned in its own module, tools/toxiproxy/go.mod, so it never moves the linters' pins.
$(TOXIPROXY): tools/toxiproxy/go.mod tools/toxiproxy/go.sum
	@command -v go >/dev/null || { echo "Go >= 1.24 is needed to build $@ (tools/toxiproxy/go.mod)" >&2; exit 1; }
	go build -C tools/toxiproxy -o $(CURDIR)/$@ github.com/Shopify/toxiproxy/v2/cmd/server

## Apache Kafka's broker jars (deploy/kafka/pom.xml), fetched with Maven once and cached.
kafka-jars: $(STAMP)
	$(BIN)/python -c "from monitor.live.kafka import ensure_jars; print('kafka jars:', ensure_jars())"

replay-sample: $(STAMP)
	$(BIN)/sla-monitor replay --until 2026-10-09T00:00:00+08:00 monitor/data/sample-day.jsonl

## Regenerates the reviewed replay output of the sample day (review the diff!).
golden: $(STAMP)
	$(BIN)/sla-monitor replay --until 2026-10-09T00:00:00+08:00 monitor/data/sample-day.jsonl \
		> tests/golden/sample-day.sla.jsonl

bench: $(STAMP)
	$(BIN)/sla-monitor bench

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
