package solvers

import (
	"runtime"
	"sync"
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

// minChunk is the smallest number of elements worth handing to another core: below it the hand-off
// costs more than the loop.
const minChunk = 1 << 15

var workers struct {
	once  sync.Once
	n     int
	tasks chan rangeTask
}

func startWorkers() {
	workers.n = runtime.NumCPU()
	workers.tasks = make(chan rangeTask, 4*workers.n)
	for i := 1; i < workers.n; i++ {
		go func() {
			for t := range workers.tasks {
				t.job.runRange(t.lo, t.hi)
				t.wg.Done()
			}
		}()
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
