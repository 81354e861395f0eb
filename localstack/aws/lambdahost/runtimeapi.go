package lambdahost

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Runtime API headers.
const (
	headerRequestID   = "Lambda-Runtime-Aws-Request-Id"
	headerDeadline    = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID     = "Lambda-Runtime-Trace-Id"
	headerErrorType   = "Lambda-Runtime-Function-Error-Type"
	headerErrorBody   = "Lambda-Runtime-Function-Error-Body" // a trailer, base64 JSON
)

// Size limits of what a runtime posts.
const (
	maxResponseBytes = 6291556 // Lambda's synchronous response limit
	maxErrorBytes    = 1 << 20
)

// runtimeAPI serves the Lambda Runtime API (2018-06-01) to one instance.
func (h *Host) runtimeAPI(inst *instance) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		h.next(inst, w, r)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		h.response(inst, w, r)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", func(w http.ResponseWriter, r *http.Request) {
		h.invocationError(inst, w, r)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, r *http.Request) {
		h.initError(inst, w, r)
	})
	return mux
}

// next completes the instance's previous invocation, if any, and blocks
// until the instance is given one.
func (h *Host) next(inst *instance, w http.ResponseWriter, r *http.Request) {
	f := inst.fn
	h.mu.Lock()
	switch inv := inst.inv; {
	case inst.state == stateDead:
		h.mu.Unlock()
		writeAPIError(w, http.StatusInternalServerError, "Runtime.Stopped", "The execution environment is shutting down.")
		return
	case inst.state == stateStarting:
		inst.state = stateIdle
		inst.wasReady = true
		inst.initTimer.Stop()
		f.stats.ColdStartDurations = append(f.stats.ColdStartDurations, time.Since(inst.started))
		close(inst.ready)
		switch {
		case inst.reserved:
		case inst.version != f.version:
			h.killLocked(inst) // configured again while it started
		default:
			h.idleLocked(inst)
		}
	case inv != nil && inv.delivered && !inv.answered:
		h.mu.Unlock()
		writeAPIError(w, http.StatusForbidden, "InvalidStateTransition", "The runtime asked for the next invocation before answering "+inv.id+".")
		return
	case inv != nil && inv.delivered:
		inv.timer.Stop()
		h.finishLocked(inv)
		inst.inv = nil
		if inst.version != f.version {
			h.killLocked(inst) // UpdateEnv retired it
			break
		}
		inst.state = stateIdle
		h.idleLocked(inst)
	}
	h.mu.Unlock()

	select {
	case inv := <-inst.dispatch:
		h.mu.Lock()
		inv.delivered = true
		h.mu.Unlock()
		hdr := w.Header()
		hdr.Set("Content-Type", "application/json")
		hdr.Set(headerRequestID, inv.id)
		hdr.Set(headerDeadline, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		hdr.Set(headerFunctionARN, f.arn)
		hdr.Set(headerTraceID, inv.traceID)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.payload)
	case <-inst.gone:
		writeAPIError(w, http.StatusInternalServerError, "Runtime.Stopped", "The execution environment is shutting down.")
	case <-r.Context().Done():
	}
}

// response records the response of the instance's invocation.
func (h *Host) response(inst *instance, w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxResponseBytes))
	var tooLarge *http.MaxBytesError
	if readErr != nil && !errors.As(readErr, &tooLarge) {
		return // the runtime went away mid-request
	}

	h.mu.Lock()
	inv := h.currentLocked(inst, r.PathValue("id"))
	switch {
	case inv == nil:
	case tooLarge != nil:
		h.answerLocked(inv, nil, &FunctionError{
			Type:    ErrorTypeTooLarge,
			Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", maxResponseBytes),
		})
	case r.Trailer.Get(headerErrorType) != "":
		// The runtime failed while streaming the response and said why in trailers.
		raw, _ := base64.StdEncoding.DecodeString(r.Trailer.Get(headerErrorBody))
		h.answerLocked(inv, nil, parseFunctionError(raw, r.Trailer.Get(headerErrorType)))
	default:
		h.answerLocked(inv, body, nil)
	}
	h.mu.Unlock()

	switch {
	case inv == nil:
		writeInvalidRequestID(w)
	case tooLarge != nil:
		writeAPIError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Response payload too large.")
	default:
		writeAccepted(w)
	}
}

// invocationError records that the instance's invocation failed.
func (h *Host) invocationError(inst *instance, w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxErrorBytes))
	var tooLarge *http.MaxBytesError
	if readErr != nil && !errors.As(readErr, &tooLarge) {
		return
	}
	fe := parseFunctionError(body, r.Header.Get(headerErrorType))

	h.mu.Lock()
	inv := h.currentLocked(inst, r.PathValue("id"))
	if inv != nil {
		h.answerLocked(inv, nil, fe)
	}
	h.mu.Unlock()

	if inv == nil {
		writeInvalidRequestID(w)
		return
	}
	writeAccepted(w)
}

// initError records why the instance failed to start, and ends it.
func (h *Host) initError(inst *instance, w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxErrorBytes))
	var tooLarge *http.MaxBytesError
	if readErr != nil && !errors.As(readErr, &tooLarge) {
		return
	}
	fe := parseFunctionError(body, r.Header.Get(headerErrorType))

	h.mu.Lock()
	starting := inst.state == stateStarting
	if starting {
		inst.initError = fe
		h.markDeadLocked(inst)
	}
	h.mu.Unlock()

	if !starting {
		writeAPIError(w, http.StatusForbidden, "InvalidStateTransition", "Init errors can only be posted during initialisation.")
		return
	}
	writeAccepted(w)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	h.mu.Lock()
	h.killLocked(inst)
	h.mu.Unlock()
}

// currentLocked returns the invocation inst holds if its id is id and it
// has no result yet.
func (h *Host) currentLocked(inst *instance, id string) *invocation {
	inv := inst.inv
	if inv == nil || inv.id != id || !inv.delivered || inv.answered {
		return nil
	}
	return inv
}

// parseFunctionError reads the error document a runtime posts:
// {"errorMessage": ..., "errorType": ..., "stackTrace": ...}.
func parseFunctionError(body []byte, headerType string) *FunctionError {
	var doc struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}
	fe := &FunctionError{}
	if err := json.Unmarshal(body, &doc); err == nil {
		fe.Type, fe.Message = doc.Type, doc.Message
	} else {
		fe.Message = string(body)
	}
	if fe.Type == "" {
		fe.Type = headerType
	}
	if fe.Type == "" {
		fe.Type = ErrorTypeUnhandled
	}
	return fe
}

func writeAccepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`+"\n")
}

func writeInvalidRequestID(w http.ResponseWriter) {
	writeAPIError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
}

func writeAPIError(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{message, errorType})
}
