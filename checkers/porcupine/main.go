// Command porcupine-check is splitbrain's bridge to the porcupine linearizability checker.
//
// It reads one JSON request on stdin: a batch of histories, each already partitioned into keys
// by the Python side (so a key's ops are checked on their own and keys run in parallel), and
// writes one JSON verdict per key on stdout. Values are opaque canonical strings chosen by the
// Python side, so the model only ever compares strings.
//
// Request:
//
//	{"model": "register"|"kv", "append": "concat"|"list", "init": "null",
//	 "timeout_ms": 20000, "key_timeout_ms": 0, "memory_limit_mb": 2048, "all_keys": false,
//	 "histories": [{"name": "h", "keys": [{"key": "r0", "visualization": "/path/r0.html",
//	   "ops": [{"c": 0, "call": 1, "ret": 5, "f": "write", "in": "3", "info": false}, ...]}]}]}
//
// Response:
//
//	{"histories": [{"name": "h", "keys": [{"key": "r0", "result": "ok"|"illegal"|"unknown"|"skipped",
//	   "ms": 1.5, "visualization": "/path/r0.html"}]}]}
//
// timeout_ms bounds the whole batch, key_timeout_ms each key. Porcupine's cache can grow without
// bound, so a watchdog answers at once when the heap passes memory_limit_mb: finished keys keep
// their verdicts, the others are "unknown" with the reason.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// op is one operation of a key's history. In, In2 and Out are canonical value strings; for a cas
// In is the expected value and In2 the new one. Info ops return at "infinity" (the Python side
// sets Ret past every other time) and their output is not checked.
type op struct {
	Client int     `json:"c"`
	Call   int64   `json:"call"`
	Ret    int64   `json:"ret"`
	F      string  `json:"f"`
	In     string  `json:"in"`
	In2    string  `json:"in2"`
	Out    *string `json:"out"`
	Info   bool    `json:"info"`
	Index  int     `json:"i"`
	// stop, when set, is the history's "an illegal key was found" flag: once it is raised every
	// step fails, so the search of a key that no longer matters ends at once (porcupine has no
	// cancellation of its own). Such a key is reported "skipped", never with that verdict.
	stop *int32
}

type keyRequest struct {
	Key           string `json:"key"`
	Visualization string `json:"visualization"`
	Ops           []op   `json:"ops"`
}

type historyRequest struct {
	Name string       `json:"name"`
	Keys []keyRequest `json:"keys"`
}

type request struct {
	Model     string           `json:"model"`
	Append    string           `json:"append"`
	Init      string           `json:"init"`
	TimeoutMs int64            `json:"timeout_ms"`
	KeyMs     int64            `json:"key_timeout_ms"`
	MemoryMB  int64            `json:"memory_limit_mb"`
	AllKeys   bool             `json:"all_keys"`
	Histories []historyRequest `json:"histories"`
}

type keyResult struct {
	Key           string  `json:"key"`
	Result        string  `json:"result"`
	Ms            float64 `json:"ms"`
	Visualization string  `json:"visualization,omitempty"`
	Error         string  `json:"error,omitempty"`
}

type historyResult struct {
	Name string      `json:"name"`
	Keys []keyResult `json:"keys"`
}

type response struct {
	Histories []historyResult `json:"histories"`
	Error     string          `json:"error,omitempty"`
}

// appendTo returns the state after appending value: string concatenation for Jepsen's kv
// histories, a JSON list extended by one element for splitbrain's node.
func appendTo(mode, init, state, value string) string {
	if mode == "list" {
		if state == init || state == "null" {
			return "[" + value + "]"
		}
		if state == "[]" {
			return "[" + value + "]"
		}
		if strings.HasPrefix(state, "[") && strings.HasSuffix(state, "]") {
			return state[:len(state)-1] + "," + value + "]"
		}
		return "\x00not-a-list"
	}
	return state + value
}

func makeModel(req *request) porcupine.Model {
	init := req.Init
	mode := req.Append
	return porcupine.Model{
		Init: func() interface{} { return init },
		Step: func(s, input, output interface{}) (bool, interface{}) {
			state := s.(string)
			o := input.(*op)
			if o.stop != nil && atomic.LoadInt32(o.stop) != 0 {
				return false, state
			}
			switch o.F {
			case "read", "get":
				if o.Info || o.Out == nil {
					return true, state
				}
				return *o.Out == state, state
			case "write", "put":
				return true, o.In
			case "delete":
				return true, init
			case "cas":
				if state == o.In {
					return true, o.In2
				}
				// An indeterminate cas that found another value did nothing; an ok one must match.
				return o.Info, state
			case "append":
				next := appendTo(mode, init, state, o.In)
				if next == "\x00not-a-list" {
					return o.Info, state
				}
				if !o.Info && o.Out != nil && *o.Out != next {
					return false, state
				}
				return true, next
			}
			return false, state
		},
		Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
		// Without a state hash every state of one linearized set shares a cache bucket, and
		// histories with many states (long appended strings) degrade to linear bucket scans.
		Hash: func(s interface{}) uint64 {
			h := fnv.New64a()
			h.Write([]byte(s.(string)))
			return h.Sum64()
		},
		DescribeOperation: func(input, output interface{}) string {
			o := input.(*op)
			suffix := ""
			if o.Info {
				suffix = " (info)"
			}
			switch o.F {
			case "read", "get":
				out := "?"
				if o.Out != nil {
					out = *o.Out
				}
				return fmt.Sprintf("#%d %s() -> %s%s", o.Index, o.F, out, suffix)
			case "cas":
				return fmt.Sprintf("#%d cas(%s, %s)%s", o.Index, o.In, o.In2, suffix)
			case "delete":
				return fmt.Sprintf("#%d delete()%s", o.Index, suffix)
			}
			return fmt.Sprintf("#%d %s(%s)%s", o.Index, o.F, o.In, suffix)
		},
		DescribeState: func(s interface{}) string { return s.(string) },
	}
}

type job struct {
	hist, key int
}

func main() {
	var req request
	dec := json.NewDecoder(bufio.NewReaderSize(os.Stdin, 1<<20))
	if err := dec.Decode(&req); err != nil {
		writeResponse(response{Error: "bad request: " + err.Error()})
		os.Exit(3)
	}
	if req.Init == "" && req.Model != "kv" {
		req.Init = "null"
	}
	model := makeModel(&req)
	start := time.Now()
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond

	resp := response{Histories: make([]historyResult, len(req.Histories))}
	var mu sync.Mutex // guards resp and done while the memory watchdog may answer early
	done := make(map[job]bool)
	stopped := make([]int32, len(req.Histories)) // set once a history has an illegal key
	var jobs []job
	for h, hist := range req.Histories {
		resp.Histories[h] = historyResult{Name: hist.Name, Keys: make([]keyResult, len(hist.Keys))}
		for k, kr := range hist.Keys {
			jobs = append(jobs, job{h, k})
			resp.Histories[h].Keys[k] = keyResult{Key: kr.Key, Result: "unknown", Error: "not finished"}
		}
	}
	if req.MemoryMB > 0 {
		go watchMemory(uint64(req.MemoryMB)<<20, func() {
			mu.Lock()
			for _, j := range jobs {
				if !done[j] {
					resp.Histories[j.hist].Keys[j.key].Error = fmt.Sprintf("memory bound of %d MB reached", req.MemoryMB)
				}
			}
			writeResponse(resp)
			os.Exit(0)
		})
	}

	// Every key gets its own goroutine (at most maxConcurrent at once) so that a few hard keys
	// run side by side instead of queueing behind each other; the Go scheduler shares the CPUs.
	sem := make(chan struct{}, maxConcurrent)
	var wg sync.WaitGroup
	keyTimeout := time.Duration(req.KeyMs) * time.Millisecond
	for _, j := range jobs {
		j := j
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			kr := req.Histories[j.hist].Keys[j.key]
			flag := &stopped[j.hist]
			res := keyResult{Key: kr.Key, Result: "skipped"}
			if req.AllKeys || atomic.LoadInt32(flag) == 0 {
				if req.AllKeys {
					flag = nil
				}
				res = checkKey(model, kr, timeout, keyTimeout, start, flag)
			}
			mu.Lock()
			resp.Histories[j.hist].Keys[j.key] = res
			done[j] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	mu.Lock()
	writeResponse(resp)
}

const maxConcurrent = 64

func watchMemory(limit uint64, onExceeded func()) {
	var stats runtime.MemStats
	for {
		time.Sleep(50 * time.Millisecond)
		runtime.ReadMemStats(&stats)
		if stats.HeapAlloc > limit {
			onExceeded()
			return
		}
	}
}

func remaining(timeout time.Duration, start time.Time) (time.Duration, bool) {
	if timeout <= 0 {
		return 0, true
	}
	left := timeout - time.Since(start)
	return left, left > 0
}

// checkKey decides one key. stop (nil when every key is wanted) is its history's flag: raised by
// the first key found illegal, it ends the searches of the others, which then report "skipped".
func checkKey(model porcupine.Model, kr keyRequest, timeout, keyTimeout time.Duration, start time.Time, stop *int32) keyResult {
	res := keyResult{Key: kr.Key}
	history := make([]porcupine.Operation, len(kr.Ops))
	for i := range kr.Ops {
		o := &kr.Ops[i]
		o.stop = stop
		history[i] = porcupine.Operation{ClientId: o.Client, Input: o, Call: o.Call, Output: o, Return: o.Ret}
	}
	left, ok := remaining(timeout, start)
	if !ok {
		res.Result = "unknown"
		res.Error = "time budget exhausted before this key"
		return res
	}
	if keyTimeout > 0 && (left == 0 || keyTimeout < left) {
		left = keyTimeout
	}
	began := time.Now()
	// The fast, non-verbose check first; the verbose one (slower) only to draw an illegal key.
	verdict := porcupine.CheckOperationsTimeout(model, history, left)
	res.Ms = float64(time.Since(began).Microseconds()) / 1000.0
	if stop != nil {
		// Trust the verdict only if no other key raised the flag while this one was searched;
		// the first illegal key raises it itself.
		if verdict == porcupine.Illegal {
			if !atomic.CompareAndSwapInt32(stop, 0, 1) {
				res.Result = "skipped"
				return res
			}
		} else if atomic.LoadInt32(stop) != 0 {
			res.Result = "skipped"
			return res
		}
		for i := range kr.Ops {
			kr.Ops[i].stop = nil // the drawing below must see the real model
		}
	}
	switch verdict {
	case porcupine.Ok:
		res.Result = "ok"
	case porcupine.Illegal:
		res.Result = "illegal"
		if kr.Visualization != "" {
			if left, ok := remaining(timeout, start); ok {
				_, info := porcupine.CheckOperationsVerbose(model, history, left)
				if err := porcupine.VisualizePath(model, info, kr.Visualization); err != nil {
					res.Error = "visualization: " + err.Error()
				} else {
					res.Visualization = kr.Visualization
				}
			}
		}
	default:
		res.Result = "unknown"
		res.Error = "time budget exhausted"
	}
	return res
}

func writeResponse(resp response) {
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	enc := json.NewEncoder(w)
	if err := enc.Encode(resp); err != nil {
		fmt.Fprintln(os.Stderr, "encoding response:", err)
		os.Exit(3)
	}
	w.Flush()
}
