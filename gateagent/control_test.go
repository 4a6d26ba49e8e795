package gateagent

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// An overlong control line is skipped, not fatal: the gate agent only
// stops when its control channel ends.
func TestReadLineSkipsOverlongLines(t *testing.T) {
	in := `{"a":1}` + "\n" + strings.Repeat("<", 3000) + "\n" + `{"b":2}` + "\n" + "tail-without-newline"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	want := []struct {
		line string
		err  error
	}{{`{"a":1}`, nil}, {"", errLineTooLong}, {`{"b":2}`, nil}, {"", io.EOF}}
	for i, w := range want {
		line, err := readLine(r, 1000)
		if string(line) != w.line || !errors.Is(err, w.err) && !(w.err == nil && err == nil) {
			t.Fatalf("read %d: %q, %v; want %q, %v", i, line, err, w.line, w.err)
		}
	}
}
