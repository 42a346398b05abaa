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
test: setup ## run every test (unit, integration, interop with Python Celery, then the fault tests) with -race
	gofmt -l . | tee /dev/stderr | (! read)
	go vet ./...
	go vet -tags faults ./cmd/vhg-worker
	$(GO_TEST) ./...
	@# The fault tests restart RabbitMQ and Redis and shorten RabbitMQ's
	@# consumer_timeout: they run last, alone, after every other package.
	$(GO_TEST) -p 1 -tags faults -run '^TestFault' ./cmd/vhg-worker

.PHONY: soak
soak: setup ## the 100k no-op soak with RSS figures (SOAK_MESSAGES=N to change the size)
	SOAK_MESSAGES=$${SOAK_MESSAGES:-100000} $(GO_TEST) -p 1 -tags faults -run '^TestFaultSoak$$' -v ./cmd/vhg-worker

.PHONY: conformance
conformance: ## Celery's canvas suite on Python vs Go workers (CELERY_SRC=celery v5.2.6 checkout)
	@.ci/setup conformance
	testdata/conformance/run.sh "$(CELERY_SRC)" both

.PHONY: bench
bench: setup build ## throughput, CPU and memory of Go vs Python workers
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./cmd/vhg-worker

.PHONY: fuzz
fuzz: ## fuzz the decoder and the receive path (FUZZTIME=60s each); crashers land in */testdata/fuzz
	go test -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-60s} ./protocol
	go test -run '^$$' -fuzz FuzzReceive -fuzztime $${FUZZTIME:-60s} ./worker
