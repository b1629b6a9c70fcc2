package solvers

import (
	"runtime"
	"sync"
	"time"
)

// rangeJob is work over an index range [lo, hi) that can be split into independent chunks.
type rangeJob interface {
	runRange(lo, hi int)
}

type rangeTask struct {
	job    rangeJob
	lo, hi int
	wg     *sync.WaitGroup
}

// minChunk is the smallest number of elements worth handing to another core. Measured on this
// project's 2-vCPU virtual machine: a million-element AdamW or Lion step split in two ran slower than on
// one core (the idle vCPU takes about as long to wake as the work takes), while ten million elements
// split in two ran 1.5x faster; so only chunks of a million elements or more are handed out.
const minChunk = 1 << 20

var workers struct {
	once  sync.Once
	n     int
	tasks chan rangeTask
}

func startWorkers() {
	workers.n = runtime.NumCPU()
	workers.tasks = make(chan rangeTask, 4*workers.n)
	for i := 1; i < workers.n; i++ {
		go workerLoop()
	}
}

// spinWindow is how long a worker stays awake polling for more work after a task before it parks: a step
// hands out several tensors in a row, and waking a parked core costs about as much as a million-element
// kernel on a virtual machine.
const spinWindow = 300 * time.Microsecond

func workerLoop() {
	for t := range workers.tasks {
		for {
			t.job.runRange(t.lo, t.hi)
			t.wg.Done()
			next, ok := pollTask(spinWindow)
			if !ok {
				break
			}
			t = next
		}
	}
}

// pollTask waits for a task by polling for at most d.
func pollTask(d time.Duration) (rangeTask, bool) {
	deadline := time.Now().Add(d)
	for {
		select {
		case t := <-workers.tasks:
			return t, true
		default:
		}
		if time.Now().After(deadline) {
			return rangeTask{}, false
		}
		runtime.Gosched()
	}
}

// parallelRange runs job over [0, n), split across the cores when n is large. The calling goroutine
// takes the first chunk. It allocates nothing: wg belongs to the caller and is reused.
func parallelRange(n int, job rangeJob, wg *sync.WaitGroup) {
	workers.once.Do(startWorkers)
	chunks := min(n/minChunk, workers.n, runtime.GOMAXPROCS(0))
	if chunks <= 1 {
		job.runRange(0, n)
		return
	}
	size := (n + chunks - 1) / chunks
	wg.Add(chunks - 1)
	for c := 1; c < chunks; c++ {
		lo := c * size
		hi := min(lo+size, n)
		workers.tasks <- rangeTask{job: job, lo: lo, hi: hi, wg: wg}
	}
	job.runRange(0, min(size, n))
	wg.Wait()
}
