package admin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Proposals holds two-person commands until a second person decides them
// or they expire. It is saved to a file so a restart loses none.
type Proposals struct {
	path string
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	items []*Proposal
}

// OpenProposals loads the proposal file at path (if any).
func OpenProposals(path string, ttl time.Duration, now func() time.Time) (*Proposals, error) {
	if now == nil {
		now = time.Now
	}
	p := &Proposals{path: path, ttl: ttl, now: now}
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &p.items); err != nil {
			return nil, fmt.Errorf("proposals %s: %w", path, err)
		}
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("proposals: %w", err)
	}
	return p, nil
}

func (p *Proposals) saveLocked() error {
	b, err := json.MarshalIndent(p.items, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save proposals: %w", err)
	}
	return os.Rename(tmp, p.path)
}

func (p *Proposals) expireLocked() {
	now := p.now()
	for _, it := range p.items {
		if it.State == "pending" && !now.Before(it.Expires) {
			it.State = "expired"
		}
	}
	// Keep decided proposals for a day, for `e2sctl proposals`.
	p.items = slices.DeleteFunc(p.items, func(it *Proposal) bool {
		return it.State != "pending" && now.Sub(it.Expires) > 24*time.Hour
	})
}

// Add records a new pending proposal by c. A proposal with a group and
// basis is refused (ErrPending) while another of its group is pending on
// the same basis; one on another basis can never run, so it is voided.
func (p *Proposals) Add(c Caller, command string, args json.RawMessage, summary, group, basis string) (*Proposal, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	now := p.now()
	it := &Proposal{ID: hex.EncodeToString(id[:]), Command: command, Args: args, Summary: summary, Group: group, Basis: basis,
		Proposer: c.String(), Person: c.Name, UID: c.UID, Created: now.UTC(), Expires: now.Add(p.ttl).UTC(), State: "pending"}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	for _, o := range p.items {
		if group == "" || o.Group != group || o.State != "pending" {
			continue
		}
		if o.Basis == basis {
			return nil, fmt.Errorf("%w: proposal %s by %s (%s) waits for approval; approve or reject it (e2sctl approve|reject %s) before proposing another",
				ErrPending, o.ID, o.Proposer, firstLine(o.Summary), o.ID)
		}
		o.State, o.Result = "void", fmt.Sprintf("%v: it was computed against %s", ErrStale, o.Basis)
	}
	p.items = append(p.items, it)
	if err := p.saveLocked(); err != nil {
		p.items = p.items[:len(p.items)-1]
		return nil, err
	}
	cp := *it
	return &cp, nil
}

// List returns every proposal, expired ones marked.
func (p *Proposals) List() []Proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	out := make([]Proposal, len(p.items))
	for i, it := range p.items {
		out[i] = *it
	}
	return out
}

// Get returns the proposal id, whatever its state.
func (p *Proposals) Get(id string) (Proposal, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	for _, it := range p.items {
		if it.ID == id {
			return *it, true
		}
	}
	return Proposal{}, false
}

// Take checks that c may decide proposal id (pending, unexpired, c is not
// the proposer) and marks it as being decided by c with state; the caller
// then carries it out and calls Finish.
func (p *Proposals) Take(id string, c Caller, state string) (Proposal, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	for _, it := range p.items {
		if it.ID != id {
			continue
		}
		switch {
		case it.State == "expired":
			return *it, fmt.Errorf("%w: %s expired at %s", ErrExpired, id, it.Expires.Format(time.RFC3339))
		case it.State != "pending":
			return *it, fmt.Errorf("%w: %s is %s", ErrNoProposal, id, it.State)
		case state == "approved" && (it.UID == c.UID || (it.Person != "" && it.Person == c.Name)):
			return *it, ErrSamePerson
		}
		it.State, it.Decider = state, c.String()
		if err := p.saveLocked(); err != nil {
			it.State, it.Decider = "pending", ""
			return *it, err
		}
		return *it, nil
	}
	return Proposal{}, fmt.Errorf("%w: %s", ErrNoProposal, id)
}

// Void ends a pending or just approved proposal that must not run, saying why.
func (p *Proposals) Void(id string, why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, it := range p.items {
		if it.ID == id {
			it.State, it.Result = "void", why.Error()
		}
	}
	p.saveLocked()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Finish records the outcome of carrying out an approved proposal.
func (p *Proposals) Finish(id string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, it := range p.items {
		if it.ID == id {
			if err != nil {
				it.State, it.Result = "failed", err.Error()
			} else {
				it.Result = "done"
			}
		}
	}
	p.saveLocked()
}
