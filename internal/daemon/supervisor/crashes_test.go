package supervisor

import (
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

func TestCrashesBackoffAndGiveUp(t *testing.T) {
	r := config.Restart{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, MaxCrashes: 4, Window: time.Minute}
	c := crashes{r: r}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		ranFor time.Duration // how long the run lasted
		after  time.Duration // when it crashed, from t0
		wait   time.Duration
		n      int
		giveUp bool
	}{
		{time.Second, 1 * time.Second, 0, 1, false}, // the first crash in the window: at once
		{time.Second, 2 * time.Second, 100 * time.Millisecond, 2, false},
		{time.Second, 3 * time.Second, 200 * time.Millisecond, 3, false},
		{2 * time.Minute, 3 * time.Minute, 0, 1, false}, // long run: window reset, at once again
		{time.Second, 3*time.Minute + time.Second, 100 * time.Millisecond, 2, false},
		{time.Second, 3*time.Minute + 2*time.Second, 200 * time.Millisecond, 3, false},
		{time.Second, 3*time.Minute + 3*time.Second, 300 * time.Millisecond, 4, true}, // capped
	}
	for i, s := range steps {
		now := t0.Add(s.after)
		wait, n, giveUp := c.record(now.Add(-s.ranFor), now)
		if wait != s.wait || n != s.n || giveUp != s.giveUp {
			t.Fatalf("crash %d: wait %v n %d giveUp %v, want %v %d %v", i+1, wait, n, giveUp, s.wait, s.n, s.giveUp)
		}
	}
}
