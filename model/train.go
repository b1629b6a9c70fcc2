package model

import (
	"math"
	"time"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"

	"github.com/gradlab/gradlab/data"
	"github.com/gradlab/gradlab/solvers/schedule"
)

// Batcher yields training batches; *data.Sampler satisfies it.
type Batcher interface {
	Next() *data.Batch
}

// TrainConfig configures Train.
type TrainConfig struct {
	// Steps is the number of optimizer steps.
	Steps int
	// EvalEvery evaluates the validation loss every EvalEvery steps, before the first step and after the
	// last (0: only before the first and after the last step).
	EvalEvery int
	// Valid are the validation batches (see EvalBatches); nil skips evaluation.
	Valid []*data.Batch
	// EvalBatches caps how many of Valid each evaluation uses (0: all).
	EvalBatches int
	// Schedule, if set, gives the learning rate of step t (0-based); the solver must then have a
	// SetLR(float64) error method (every gradlab solver has). Nil leaves the solver's own rate or schedule.
	Schedule schedule.Schedule
	// LogEvery calls LogFunc every LogEvery steps (0: only on evaluation steps); LogFunc, if set, receives
	// the records.
	LogEvery int
	LogFunc  func(Record)
	// Stop, if set, is called with every evaluation record after a step (ValidLoss set); returning true
	// ends training there (early stopping, a target loss, a time budget via Record.Elapsed).
	Stop func(Record) bool
}

// Record is one training step (or, for Step 0, the evaluation before training).
type Record struct {
	// Step is the number of steps taken after this record (1 for the first step; 0 for the initial
	// evaluation).
	Step int
	// LR is the learning rate used for the step (NaN when unknown).
	LR float64
	// TrainLoss is the cross-entropy of the step's batch before the update (nats per token), AuxLoss the
	// MoE auxiliary losses added to it in the cost.
	TrainLoss, AuxLoss float64
	// ValidLoss is the validation cross-entropy after the step, NaN when not evaluated at this step.
	ValidLoss float64
	// GradNorm is the global L2 norm of the gradient the step used, before the solver (and any clipping).
	GradNorm float64
	// TokensPerSec is B·T over the step's wall time (forward, backward, gradient norm, solver, bias update;
	// evaluation excluded).
	TokensPerSec float64
	// Elapsed is the training time so far, evaluation excluded.
	Elapsed time.Duration
}

// History is what Train returns.
type History struct {
	// Records holds one record per step (Records[i].Step = i+1).
	Records []Record
	// Evals holds the evaluation records (Step 0 first, then every EvalEvery steps and the last).
	Evals []Record
	// Tokens is the number of training tokens processed; TrainTime the time spent training (evaluation
	// excluded) and TokensPerSec their ratio.
	Tokens       int64
	TrainTime    time.Duration
	TokensPerSec float64
}

// FinalValidLoss returns the last validation loss, NaN without evaluations.
func (h *History) FinalValidLoss() float64 {
	if len(h.Evals) == 0 {
		return math.NaN()
	}
	return h.Evals[len(h.Evals)-1].ValidLoss
}

type lrSetter interface{ SetLR(float64) error }
type lrGetter interface{ LR() float64 }

// Train runs cfg.Steps optimizer steps of solver on batches drawn from train: per step, bind the batch,
// run the forward and backward passes (Model.Grad), measure the gradient norm, set the scheduled learning
// rate, call solver.Step on the model's parameters (which applies and zeroes the gradients) and, for MoE
// models, the auxiliary-loss-free bias update (Model.UpdateBias). The validation loss (Model.Evaluate) is
// measured before the first step, every cfg.EvalEvery steps and after the last. A non-finite training loss
// stops the run with an error; the history so far is returned with it.
func Train(m *Model, solver G.Solver, train Batcher, cfg TrainConfig) (*History, error) {
	if m == nil || solver == nil || train == nil {
		return nil, errors.New("model.Train: nil model, solver or batcher")
	}
	if cfg.Steps < 0 {
		return nil, errors.Errorf("model.Train: %d steps", cfg.Steps)
	}
	var setLR lrSetter
	if cfg.Schedule != nil {
		var ok bool
		if setLR, ok = solver.(lrSetter); !ok {
			return nil, errors.Errorf("model.Train: a schedule needs a solver with SetLR, got %T", solver)
		}
	}
	valid := cfg.Valid
	if cfg.EvalBatches > 0 && len(valid) > cfg.EvalBatches {
		valid = valid[:cfg.EvalBatches]
	}
	h := &History{}
	evaluate := func(r Record) (Record, error) {
		if len(valid) == 0 {
			return r, nil
		}
		v, err := m.Evaluate(valid)
		if err != nil {
			return r, errors.Wrapf(err, "model.Train: evaluation after step %d", r.Step)
		}
		r.ValidLoss = v
		h.Evals = append(h.Evals, r)
		return r, nil
	}
	log := func(r Record, eval bool) {
		if cfg.LogFunc != nil && (eval || (cfg.LogEvery > 0 && r.Step%cfg.LogEvery == 0)) {
			cfg.LogFunc(r)
		}
	}
	r0, err := evaluate(Record{Step: 0, LR: math.NaN(), TrainLoss: math.NaN(), AuxLoss: math.NaN(),
		GradNorm: math.NaN(), TokensPerSec: math.NaN(), ValidLoss: math.NaN()})
	if err != nil {
		return h, err
	}
	if len(valid) > 0 {
		log(r0, true)
	}
	tokens := m.Tokens()
	for step := 0; step < cfg.Steps; step++ {
		start := time.Now()
		r := Record{Step: step + 1, LR: math.NaN(), ValidLoss: math.NaN()}
		if err := m.SetDataBatch(train.Next()); err != nil {
			return h, errors.Wrapf(err, "model.Train: step %d", step+1)
		}
		if _, err := m.Grad(); err != nil {
			return h, errors.Wrapf(err, "model.Train: step %d", step+1)
		}
		if r.TrainLoss, r.AuxLoss, err = m.LastLosses(); err != nil {
			return h, err
		}
		if math.IsNaN(r.TrainLoss) || math.IsInf(r.TrainLoss, 0) || math.IsNaN(r.AuxLoss) {
			zeroGrads(m)
			return h, errors.Errorf("model.Train: non-finite loss %v at step %d", r.TrainLoss, step+1)
		}
		if r.GradNorm, err = m.GradNorm(); err != nil {
			return h, err
		}
		if setLR != nil {
			if err := setLR.SetLR(cfg.Schedule.At(step)); err != nil {
				return h, errors.Wrapf(err, "model.Train: step %d", step+1)
			}
		}
		if g, ok := solver.(lrGetter); ok {
			r.LR = g.LR()
		}
		if err := solver.Step(m.ValueGrads()); err != nil {
			return h, errors.Wrapf(err, "model.Train: solver step %d", step+1)
		}
		if err := m.UpdateBias(); err != nil {
			return h, err
		}
		dt := time.Since(start)
		h.TrainTime += dt
		h.Tokens += int64(tokens)
		r.TokensPerSec = float64(tokens) / dt.Seconds()
		r.Elapsed = h.TrainTime
		eval := step+1 == cfg.Steps || (cfg.EvalEvery > 0 && (step+1)%cfg.EvalEvery == 0)
		if eval {
			if r, err = evaluate(r); err != nil {
				return h, err
			}
			eval = len(valid) > 0
		}
		h.Records = append(h.Records, r)
		log(r, eval)
		if eval && cfg.Stop != nil && cfg.Stop(r) {
			break
		}
	}
	if h.TrainTime > 0 {
		h.TokensPerSec = float64(h.Tokens) / h.TrainTime.Seconds()
	}
	return h, nil
}

// zeroGrads clears the accumulated gradients (after a refused step).
func zeroGrads(m *Model) {
	for _, p := range m.params {
		if gv, err := p.Grad(); err == nil {
			if z, ok := gv.(interface{ Zero() }); ok {
				z.Zero()
			}
		}
	}
}

// EvalBatches cuts n validation batches of batch windows of context+1 tokens out of tokens: the windows
// of a data.Sequential pass (non-overlapping, every token a target once), taking n batches spread evenly
// over the whole stream (all of them when n ≤ 0 or the stream holds fewer). The batches are copies.
func EvalBatches[T data.Token](tokens []T, batch, context, n int) ([]*data.Batch, error) {
	seq, err := data.NewSequential(tokens, batch, context)
	if err != nil {
		return nil, err
	}
	total := (seq.Windows() + batch - 1) / batch
	stride := 1
	if n > 0 && total > n {
		stride = total / n
	}
	var out []*data.Batch
	for i := 0; ; i++ {
		b, ok := seq.Next()
		if !ok || (n > 0 && len(out) == n) {
			break
		}
		if i%stride != 0 {
			continue
		}
		c := *b
		c.Inputs = append([]int(nil), b.Inputs...)
		c.Targets = append([]int(nil), b.Targets...)
		c.Starts = append([]int(nil), b.Starts...)
		out = append(out, &c)
	}
	return out, nil
}
