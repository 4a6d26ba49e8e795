package cms

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

func python(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	path := testutil.Requires(t, "python3")
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestCompressInterop checks CompressedData against an independent codec
// (Python's zlib and a hand-written DER reader), since Debian's openssl is
// built without zlib.
func TestCompressInterop(t *testing.T) {
	inputs := map[string][]byte{
		"empty": {},
		"small": testContent,
		"large": bytes.Repeat(testContent, 5000),
		"binary": func() []byte {
			b := make([]byte, 70000)
			for i := range b {
				b[i] = byte(i * 7)
			}
			return b
		}(),
	}
	for name, in := range inputs {
		t.Run(name+"/go to python", func(t *testing.T) {
			der, err := Compress(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := python(t, der, "testdata/compressed.py", "read"); !bytes.Equal(got, in) {
				t.Fatalf("python read %d bytes, want %d", len(got), len(in))
			}
		})
		t.Run(name+"/python to go", func(t *testing.T) {
			der := python(t, in, "testdata/compressed.py", "make")
			got, err := Decompress(der, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, in) {
				t.Fatalf("got %d bytes, want %d", len(got), len(in))
			}
		})
	}
}

func TestDecompressFailures(t *testing.T) {
	bomb, err := Compress(make([]byte, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	good, err := Compress(testContent)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-6] ^= 0xff // inside the zlib stream / Adler-32
	tests := []struct {
		name string
		der  []byte
		max  int64
		want error
	}{
		{"over limit", bomb, 1 << 19, ErrDecompress},
		{"corrupt stream", corrupt, 0, ErrDecompress},
		{"truncated", good[:len(good)-4], 0, ErrMalformed},
		{"not compressed", contentInfo(oidData, []byte{0x04, 0x00}), 0, ErrUnexpectedContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decompress(tt.der, tt.max); !errors.Is(err, tt.want) {
				t.Fatalf("Decompress error = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("at limit", func(t *testing.T) {
		if _, err := Decompress(bomb, 1<<20); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDecompressKnownAnswer decodes a committed vector made by the
// independent Python codec (testdata/compressed.py), so the check runs even
// where python3 is missing.
func TestDecompressKnownAnswer(t *testing.T) {
	der, err := os.ReadFile("testdata/compressed-kat.der")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/compressed-kat.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decompress(der, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
