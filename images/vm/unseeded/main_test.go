package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandlerAnswers503WithReason(t *testing.T) {
	for reason := range Reasons {
		t.Run(reason, func(t *testing.T) {
			for _, path := range []string{"/", "/cgi-bin/purchasing/catalogue", "/cgi-bin/purchasing/order"} {
				for _, method := range []string{"GET", "POST"} {
					w := httptest.NewRecorder()
					Handler(reason).ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(`{"items":[]}`)))
					if w.Code != http.StatusServiceUnavailable {
						t.Fatalf("%s %s = %d, want 503", method, path, w.Code)
					}
					if got := w.Header().Get("X-E2S-Reason"); got != reason {
						t.Fatalf("X-E2S-Reason = %q, want %q", got, reason)
					}
					var b map[string]string
					if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
						t.Fatalf("body %q: %v", w.Body, err)
					}
					if b["error"] != reason || b["next"] == "" || b["next"] != Reasons[reason].Next || b["message"] == "" {
						t.Fatalf("body = %v", b)
					}
				}
			}
		})
	}
	t.Run("unknown reason", func(t *testing.T) {
		w := httptest.NewRecorder()
		Handler("no.such").ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 503 || w.Header().Get("X-E2S-Reason") != Fallback {
			t.Fatalf("= %d %q", w.Code, w.Header().Get("X-E2S-Reason"))
		}
	})
}

func TestReadReason(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "state")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ content, want string }{
		{"seed.config_refused\n", "seed.config_refused"},
		{"seed.no_config since 2026-12-03\n", "seed.no_config"},
		{"", Fallback},
		{"<script>\n", Fallback},
	} {
		if got := ReadReason(write(c.content)); got != c.want {
			t.Errorf("ReadReason(%q) = %q, want %q", c.content, got, c.want)
		}
	}
	if got := ReadReason(filepath.Join(dir, "missing")); got != Fallback {
		t.Errorf("missing file: %q", got)
	}
}
