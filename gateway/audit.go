package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
)

// auditEvents maps the log's messages to the audit log's stable event
// names (README "Audit log"). Everything else stays out of the audit log.
var auditEvents = map[string]string{
	"connection":          "connect",
	"auth ok":             "auth.success",
	"auth failed":         "auth.failure",
	"session exec":        "session.start",
	"session end":         "session.end",
	"forward open":        "forward.open",
	"forward close":       "forward.close",
	"forward refused":     "forward.refused",
	"environment start":   "env.start",
	"environment end":     "env.end",
	"limit.oom":           "limit.oom",
	"limit.disk":          "limit.disk",
	"environment adopted": "env.adopt",
	"reloaded":            "config.reload",
	"reload rejected":     "config.reload",
	"disconnect":          "disconnect",
	"connection refused":  "connect.refused",
	"session timeout":     "session.timeout",
	"upgrade":             "gateway.upgrade",
	"upgrade failed":      "gateway.upgrade",
	"network drop":        "network.drop",
}

// auditKeys are the attributes an audit event may carry: ids, names,
// addresses, fingerprints, reasons and numbers — never env values, key
// material or what the tenant typed.
var auditKeys = map[string]bool{
	"tenant": true, "user": true, "remote": true, "session": true, "conn": true, "fingerprint": true,
	"reason": true, "method": true, "exit": true, "duration": true, "env": true, "port": true,
	"bytes_in": true, "bytes_out": true, "kind": true, "command": true, "pty": true, "limit": true,
	"tenants": true, "config": true, "changes": true, "errors": true, "err": true, "key_id": true, "serial": true, "comment": true,
	"used": true, "inodes": true, "inodes_limit": true, "backend": true, "age": true, "sessions": true,
	"old_pid": true, "new_pid": true, "old_version": true, "new_version": true,
	"dst": true, "proto": true,
}

// NetworkDropLogger is a jail.NetworkOptions.OnDrop that logs to log the
// audit event network.drop: the tenant, her environment and the
// destination (ip:port) and protocol policy dropped.
func NetworkDropLogger(log *slog.Logger) func(tenant, env string, dst netip.AddrPort, proto string) {
	return func(tenant, env string, dst netip.AddrPort, proto string) {
		log.Warn("network drop", "tenant", tenant, "env", env, "dst", dst.String(), "proto", proto)
	}
}

// AuditHandler is a slog.Handler that writes the audit events among the
// log records as JSON lines: {"time", "event", …}. Its writer may be
// swapped with Reopen (logrotate's SIGUSR1).
type AuditHandler struct {
	mu sync.Mutex
	w  io.Writer
}

// NewAuditHandler writes audit events to w.
func NewAuditHandler(w io.Writer) *AuditHandler { return &AuditHandler{w: w} }

// Reopen swaps the writer, returning the old one for the caller to close.
func (h *AuditHandler) Reopen(w io.Writer) io.Writer {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.w
	h.w = w
	return old
}

// Enabled implements slog.Handler: every level may carry an event.
func (h *AuditHandler) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs implements slog.Handler; the gateway logs flat records.
func (h *AuditHandler) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup implements slog.Handler.
func (h *AuditHandler) WithGroup(string) slog.Handler { return h }

// Handle writes r as an audit event if its message is one.
func (h *AuditHandler) Handle(_ context.Context, r slog.Record) error {
	event, ok := auditEvents[r.Message]
	if !ok {
		return nil
	}
	ev := map[string]any{"time": r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), "event": event}
	switch r.Message {
	case "reload rejected", "upgrade failed":
		ev["result"] = "error"
	case "reloaded", "upgrade":
		ev["result"] = "ok"
	}
	r.Attrs(func(a slog.Attr) bool {
		if !auditKeys[a.Key] {
			return true
		}
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindDuration:
			ev[a.Key+"_ms"] = v.Duration().Milliseconds()
		case slog.KindString:
			ev[a.Key] = v.String()
		default:
			ev[a.Key] = v.Any()
		}
		return true
	})
	// A session id is <connection id>-<n>: name the connection too.
	if sid, ok := ev["session"].(string); ok && ev["conn"] == nil {
		if i := strings.LastIndexByte(sid, '-'); i > 0 {
			ev["connection"] = sid[:i]
		}
	}
	if c, ok := ev["conn"]; ok {
		ev["connection"] = c
		delete(ev, "conn")
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err = h.w.Write(append(b, '\n'))
	return err
}

// Tee sends every record to both handlers (the operational log and the
// audit log).
type Tee struct{ A, B slog.Handler }

// Enabled implements slog.Handler.
func (t Tee) Enabled(ctx context.Context, l slog.Level) bool {
	return t.A.Enabled(ctx, l) || t.B.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (t Tee) Handle(ctx context.Context, r slog.Record) error {
	var errA, errB error
	if t.A.Enabled(ctx, r.Level) {
		errA = t.A.Handle(ctx, r.Clone())
	}
	if t.B.Enabled(ctx, r.Level) {
		errB = t.B.Handle(ctx, r)
	}
	if errA != nil {
		return errA
	}
	return errB
}

// WithAttrs implements slog.Handler.
func (t Tee) WithAttrs(as []slog.Attr) slog.Handler {
	return Tee{t.A.WithAttrs(as), t.B.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (t Tee) WithGroup(g string) slog.Handler { return Tee{t.A.WithGroup(g), t.B.WithGroup(g)} }
