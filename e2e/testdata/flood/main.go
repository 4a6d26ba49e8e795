// Command flood is a test rig of the e2e admin tests: run as a local
// account, it opens many connections to the admin socket and reports how
// each was answered, as JSON.
//
//	flood -socket S -n 300 -size 2097152   n connections, each sending size bytes
//	flood -socket S -hold 6 -limit 4       6 connections at once that send nothing
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

func main() {
	socket := flag.String("socket", "", "admin socket")
	n := flag.Int("n", 0, "connections, one after another in parallel batches")
	size := flag.Int("size", 0, "bytes each connection sends")
	hold := flag.Int("hold", 0, "connections held open at once, sending nothing")
	limit := flag.Int("limit", 4, "with -hold: the connections per uid the server allows")
	flag.Parse()
	answers := map[string]int{}
	var mu sync.Mutex
	count := func(reason string) { mu.Lock(); answers[reason]++; mu.Unlock() }
	read := func(c net.Conn) string {
		var r struct {
			Reason string `json:"reason"`
			Error  string `json:"error"`
		}
		if err := json.NewDecoder(bufio.NewReader(c)).Decode(&r); err != nil {
			return "no answer"
		}
		if r.Reason == "" && strings.Contains(r.Error, "larger than") {
			return "too large"
		}
		return r.Reason
	}
	switch {
	case *n > 0:
		body := []byte(strings.Repeat("x", *size) + "\n")
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for range *n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				c, err := net.Dial("unix", *socket)
				if err != nil {
					count("dial failed")
					return
				}
				defer c.Close()
				go c.Write(body) // the server may answer without reading
				count(read(c))
			}()
		}
		wg.Wait()
	case *hold > 0:
		// Each held connection waits for its answer; the ones over the
		// limit are answered at once, and then all are closed.
		conns := make([]net.Conn, 0, *hold)
		for range *hold {
			c, err := net.Dial("unix", *socket)
			if err != nil {
				count("dial failed")
				continue
			}
			conns = append(conns, c)
		}
		busy := make(chan string, len(conns))
		for _, c := range conns {
			go func() { busy <- read(c) }()
		}
		for got := 0; got < len(conns); {
			r := <-busy
			count(r)
			got++
			if r == "adm.busy" && answers["adm.busy"] == len(conns)-*limit {
				break
			}
		}
		for _, c := range conns {
			c.Close()
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	b, _ := json.Marshal(answers)
	fmt.Println(string(b))
}
