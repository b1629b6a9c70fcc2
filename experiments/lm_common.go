package main

// Shared pieces of the language-model experiments (muon-vs-adamw, mla-moe): the Go-source corpus, one
// training run of model.Model with AdamW or Muon+AdamW under a warm-up + cosine schedule, and an honest
// FLOP count (model matmuls plus Muon's Newton–Schulz iterations).

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	G "gorgonia.org/gorgonia"

	"github.com/gradlab/gradlab/data"
	"github.com/gradlab/gradlab/model"
	"github.com/gradlab/gradlab/solvers"
	"github.com/gradlab/gradlab/solvers/schedule"
)

// lmTinySteps, when positive, overrides the step budget of the LM experiments (tests only) and shrinks
// them to one learning rate per optimizer, batch 4 and a small corpus.
var lmTinySteps int

// lmCorpus is the byte-level Go-source corpus and its fixed validation batches.
type lmCorpus struct {
	Info         data.Info
	Train, Valid []byte
	Unigram      float64 // unigram cross-entropy of the validation text under train counts (nats/byte)
}

var (
	lmCorpusMu    sync.Mutex
	lmCorpusCache = map[int64]*lmCorpus{}
)

// loadLMCorpus loads (once per byte cap) the Go standard library's source capped at maxBytes.
func loadLMCorpus(maxBytes int64) (*lmCorpus, error) {
	lmCorpusMu.Lock()
	defer lmCorpusMu.Unlock()
	if c, ok := lmCorpusCache[maxBytes]; ok {
		return c, nil
	}
	c, err := data.LoadGoSource("", data.WithMaxBytes(maxBytes))
	if err != nil {
		return nil, fmt.Errorf("loading the Go-source corpus: %w", err)
	}
	if c.Valid.Len() < 10000 || c.Train.Len() < 10000 {
		return nil, fmt.Errorf("Go-source corpus too small: %s", c.Info)
	}
	u, err := data.UnigramCrossEntropy(c.Train.Text, c.Valid.Text, data.ByteVocabSize, 1)
	if err != nil {
		u = math.NaN()
	}
	out := &lmCorpus{Info: c.Info, Train: c.Train.Text, Valid: c.Valid.Text, Unigram: u}
	lmCorpusCache[maxBytes] = out
	return out, nil
}

// lmRunSpec is one training run.
type lmRunSpec struct {
	Name      string
	Cfg       model.Config
	Batch     int
	Steps     int
	EvalEvery int
	Optimizer string  // "adamw" or "muon" (Muon on hidden matrices + AdamW on the rest)
	LR        float64 // peak LR: AdamW's, or Muon's for "muon"
	AuxLR     float64 // the AdamW side's peak LR for "muon"
	WD        float64 // AdamW weight decay (baseline); the Muon run's AdamW side keeps the reference's 0
	Warmup    int
	Seed      int64
	CurveVal  []*data.Batch // validation batches evaluated during training
	FinalVal  []*data.Batch // the larger set for the final loss
	GenTokens int           // tokens generated with the KV cache after training (0: none)
	Tokens    []byte        // training tokens (shared, read-only)
	KeepModel bool          // return the trained model in the result (the caller closes it)
}

// lmRunResult is what one run measured.
type lmRunResult struct {
	Status        string
	EvalSteps     []float64
	EvalLoss      []float64
	TrainLoss     []float64 // per step
	FinalValid    float64
	Total, Active int
	MuonShapes    [][2]int // the matrices routed to Muon
	TokensPerSec  float64
	GenTokPerSec  float64
	CacheBytes    int
	CachePerToken float64
	MoECV         []float64 // expert-load CV per MoE layer on the final validation set
	MoEMaxVio     []float64
	StateBytes    int64
	FlopsPerStep  float64 // model forward+backward (Kaplan: 6N + 6·L·T·d per token)
	NSFlopsStep   float64 // Newton–Schulz FLOPs per step (Muon runs)
	Wall          float64
	Model         *model.Model // with KeepModel, the trained model (nil on failure)
}

func lmSchedule(peak float64, steps, warmup int) (schedule.Schedule, error) {
	if warmup >= steps {
		warmup = steps / 2
	}
	cos, err := schedule.Cosine(peak, 0.1*peak, max(1, steps-warmup))
	if err != nil {
		return nil, err
	}
	return schedule.WarmupThen(warmup, peak, cos)
}

func lmSolver(s *lmRunSpec) (G.Solver, error) {
	switch s.Optimizer {
	case "adamw":
		return solvers.NewAdamW(solvers.WithLR(s.LR), solvers.WithBetas(0.9, 0.95), solvers.WithWeightDecay(s.WD))
	case "muon":
		return solvers.NewMuonWithAdamW(solvers.MuonAdamWConfig{
			Muon:  []solvers.Option{solvers.WithLR(s.LR)},
			AdamW: []solvers.Option{solvers.WithLR(s.AuxLR)},
		})
	}
	return nil, fmt.Errorf("unknown optimizer %q", s.Optimizer)
}

// nsFlops is the FLOP count of Newton–Schulz on an r×c matrix: with m = min(r, c), n = max(r, c), each of
// the 5 quintic iterations does A = X·Xᵀ (2m²n), B = b·A + c·A·A (2m³) and X = a·X + B·X (2m²n):
// 5·(4m²n + 2m³).
func nsFlops(r, c, steps int) float64 {
	m, n := float64(min(r, c)), float64(max(r, c))
	return float64(steps) * (4*m*m*n + 2*m*m*m)
}

// modelFlopsPerToken is the Kaplan et al. training count 6·N_active_matmul + 6·L·T·d per token, with
// N_active_matmul the active parameters less the embedding table (a lookup, no FLOPs) and the norm gains.
func modelFlopsPerToken(m *model.Model) float64 {
	cfg := m.Config()
	_, active := m.ParamCount()
	n := active
	for _, p := range m.Params() {
		if p.Name() == "embed.weight" && !cfg.TieEmbeddings {
			n -= p.Shape().TotalSize()
		}
		if p.Shape().Dims() == 1 {
			n -= p.Shape().TotalSize()
		}
	}
	return 6*float64(n) + 6*float64(cfg.Layers*cfg.Context*cfg.Dim)
}

// runLM trains one model; failures are recorded in Status rather than returned.
func runLM(s *lmRunSpec) (res lmRunResult) {
	start := time.Now()
	res.FinalValid = math.NaN()
	res.GenTokPerSec = math.NaN()
	defer func() { res.Wall = time.Since(start).Seconds() }()
	fail := func(err error) lmRunResult { res.Status = "failed: " + firstLine(err.Error()); return res }
	m, err := model.New(s.Cfg, s.Batch)
	if err != nil {
		return fail(err)
	}
	keep := false
	defer func() {
		if keep {
			res.Model = m
		} else {
			m.Close()
		}
	}()
	res.Total, res.Active = m.ParamCount()
	res.FlopsPerStep = modelFlopsPerToken(m) * float64(m.Tokens())
	solver, err := lmSolver(s)
	if err != nil {
		return fail(err)
	}
	if g, ok := solver.(*solvers.Groups); ok {
		for _, p := range m.Params() {
			if g.Route(p.Name(), p.Shape()) == "muon" {
				sh := p.Shape()
				res.MuonShapes = append(res.MuonShapes, [2]int{sh[0], sh[1]})
				res.NSFlopsStep += nsFlops(sh[0], sh[1], solvers.DefaultNSSteps)
			}
		}
	}
	if sb, ok := solver.(interface{ StateBytes() int64 }); ok {
		defer func() { res.StateBytes = sb.StateBytes() }()
	}
	sched, err := lmSchedule(s.LR, s.Steps, s.Warmup)
	if err != nil {
		return fail(err)
	}
	sampler, err := data.NewSampler(s.Tokens, s.Batch, s.Cfg.Context, s.Seed)
	if err != nil {
		return fail(err)
	}
	h, err := model.Train(m, solver, sampler, model.TrainConfig{Steps: s.Steps, EvalEvery: s.EvalEvery, Valid: s.CurveVal, Schedule: sched})
	if h != nil {
		for _, r := range h.Records {
			res.TrainLoss = append(res.TrainLoss, r.TrainLoss)
		}
		for _, r := range h.Evals {
			res.EvalSteps = append(res.EvalSteps, float64(r.Step))
			res.EvalLoss = append(res.EvalLoss, r.ValidLoss)
		}
		res.TokensPerSec = h.TokensPerSec
	}
	if err != nil {
		return fail(err)
	}
	if res.FinalValid, err = m.Evaluate(s.FinalVal); err != nil {
		return fail(err)
	}
	// Expert load on validation batches: the forward-only program does not record routing statistics, so
	// run the training machine's forward (and backward, whose gradients are discarded with the model).
	if len(m.MoELayers()) > 0 {
		for _, l := range m.MoELayers() {
			l.ResetStats()
		}
		for _, b := range s.FinalVal[:min(4, len(s.FinalVal))] {
			if err := m.SetDataBatch(b); err != nil {
				return fail(err)
			}
			if _, err := m.Grad(); err != nil {
				return fail(err)
			}
		}
	}
	for _, l := range m.MoELayers() {
		st := l.Stats()
		if st.Tokens == 0 {
			res.MoECV, res.MoEMaxVio = append(res.MoECV, math.NaN()), append(res.MoEMaxVio, math.NaN())
			continue
		}
		res.MoECV, res.MoEMaxVio = append(res.MoECV, st.CV), append(res.MoEMaxVio, st.MaxViolation)
	}
	if s.GenTokens > 0 {
		if err := lmGenerate(m, &res, s.FinalVal[0].Inputs[:16], s.GenTokens); err != nil {
			return fail(err)
		}
	}
	if math.IsNaN(res.FinalValid) || math.IsInf(res.FinalValid, 0) {
		res.Status = "diverged"
	} else {
		res.Status = "ok"
	}
	keep = s.KeepModel
	return res
}

// lmGenerate decodes n tokens greedily after prompt with the KV caches and records tokens/s and the cache
// size (CacheBytes over the len(prompt)+n−1 cached positions: the last token is not fed back).
// Tokens/s is the median of lmGenReps repetitions (each a fresh cache).
func lmGenerate(m *model.Model, res *lmRunResult, prompt []int, n int) error {
	var tps []float64
	var gen *model.Generation
	for r := 0; r < lmGenReps; r++ {
		var err error
		if gen, err = m.Generate(prompt, n, model.SampleConfig{}); err != nil {
			return err
		}
		tps = append(tps, gen.TokensPerSec)
	}
	sort.Float64s(tps)
	res.GenTokPerSec = tps[len(tps)/2]
	res.CacheBytes = gen.CacheBytes
	res.CachePerToken = float64(gen.CacheBytes) / float64(len(prompt)+n-1)
	return nil
}

// lmGenReps is the number of timed generations per model.
const lmGenReps = 5

// lmCrossing returns the (linearly interpolated) step at which the curve first reaches target, NaN if
// it never does.
func lmCrossing(steps, loss []float64, target float64) float64 {
	for i := range loss {
		if loss[i] <= target {
			if i == 0 {
				return steps[0]
			}
			x0, x1, y0, y1 := steps[i-1], steps[i], loss[i-1], loss[i]
			if y0 == y1 {
				return x1
			}
			return x0 + (y0-target)/(y0-y1)*(x1-x0)
		}
	}
	return math.NaN()
}

func lmSeeds(base int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = base + int64(i)
	}
	return out
}
