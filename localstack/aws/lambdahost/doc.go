// Package lambdahost runs Lambda functions on one machine the way AWS Lambda
// does: each function is its real bootstrap executable, started in child
// processes, and driven through the real Lambda Runtime API (2018-06-01).
//
// Every instance (process) gets its own Runtime API listener on 127.0.0.1,
// a clean Lambda-like environment and its own process group. Instances start
// lazily (a cold start), are reused while warm, are killed when an invocation
// times out, and are replaced when they exit. At most Function.Concurrency
// instances of a function run at once; further invocations wait for one
// and are served strictly in arrival order. That is this machine's limit;
// AWS's limits, the account's concurrency and a function's reserved
// concurrency, throttle an invocation over them instead (throttle.go).
//
// Process groups are signalled safely on Linux only (the leader is left
// unreaped until its group has been killed); children also get Pdeathsig
// there, so they die with the host. Other Unix systems work without those
// two guarantees.
package lambdahost
