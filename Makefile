# vhg-worker: a Celery worker in Go for the VHG adaptation pipeline.
export PATH := /usr/local/go/bin:$(PATH)

BIN        := bin/vhg-worker
GO_TEST    := go test -race -count=1 -timeout 30m
ARGS       ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install ffmpeg, RabbitMQ, Redis and Python Celery if missing; start the services
	@.ci/setup

.PHONY: build
build: ## build bin/vhg-worker
	go build -o $(BIN) ./cmd/vhg-worker

.PHONY: run
run: setup build ## run a worker on the default broker (ARGS="-c 2 ..." adds flags)
	$(BIN) worker $(ARGS)

.PHONY: test
test: setup lint test-unit test-integration test-faults cluster-test ## every tier, as CI runs it: lint, unit, integration, faults, cluster (-race)

.PHONY: lint
lint: ## gofmt and go vet, with every build tag
	gofmt -l . | tee /dev/stderr | (! read)
	go vet ./...
	go vet -tags integration ./...
	go vet -tags 'integration faults' ./...

.PHONY: test-unit
test-unit: ## unit tests: no RabbitMQ, Redis, ffmpeg or Python needed
	$(GO_TEST) ./...

.PHONY: test-integration
test-integration: setup ## against the real RabbitMQ, Redis, ffmpeg and Python Celery (-tags integration)
	$(GO_TEST) -tags integration ./...

.PHONY: test-faults
test-faults: setup ## the fault tests (-tags faults): they restart RabbitMQ and Redis, so they run last and alone
	$(GO_TEST) -p 1 -tags 'integration faults' -run '^TestFault' ./cmd/vhg-worker

.PHONY: cluster-test
cluster-test: setup ## a private three-node RabbitMQ cluster beside the system node (about 2.5 min, 450 MB): failover, quorum queues, TLS
	$(GO_TEST) -p 1 -tags 'integration faults' -run '^TestCluster' -v ./cmd/vhg-worker

.PHONY: soak
soak: setup ## the 100k no-op soak with RSS figures (SOAK_MESSAGES=N to change the size)
	SOAK_MESSAGES=$${SOAK_MESSAGES:-100000} $(GO_TEST) -p 1 -tags 'integration faults' -run '^TestFaultSoak$$' -v ./cmd/vhg-worker

.PHONY: conformance
conformance: ## Celery's canvas suite on Python vs Go workers (CELERY_SRC=celery v5.2.6 checkout)
	@.ci/setup conformance
	testdata/conformance/run.sh "$(CELERY_SRC)" both

.PHONY: bench
bench: setup build ## Go vs floor vs Python: no-op tasks, chain hops, encode_workflow (BENCH_* settings: README)
	go test -tags integration -run '^$$' -bench . -benchtime 1x -timeout 30m ./cmd/vhg-worker

.PHONY: fuzz
fuzz: ## fuzz the decoder and the receive path (FUZZTIME=60s each); crashers land in */testdata/fuzz
	go test -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-60s} ./protocol
	go test -run '^$$' -fuzz FuzzReceive -fuzztime $${FUZZTIME:-60s} ./worker
