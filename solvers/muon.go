package solvers

import (
	"math"
	"strings"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Layout and Muon's shape factor. Keller Jordan's Muon scales the orthogonalised update by
// sqrt(max(1, fan_out/fan_in)); the reference writes it max(1, rows/cols) because PyTorch's Linear.weight is
// (out, in). gradlab/Gorgonia compute y = x·W with W stored (in, out), so by default
//
//	fan_in = shape[0] (rows), fan_out = shape[1] (cols): scale = sqrt(max(1, cols/rows)),
//
// and with the flag "channel_first" (tensors in PyTorch's (out, in) layout) fan_out = rows, fan_in = cols:
// scale = sqrt(max(1, rows/cols)). A weight and its transpose in the other layout therefore get the same
// update (transposed) bit for bit. The Moonlight variant's factor 0.2·sqrt(max(rows, cols)), Frobenius
// norms and the Newton–Schulz iteration are symmetric and do not depend on the layout.

func muonSpecs(lr, wd float64) []hyperSpec {
	return []hyperSpec{
		lrSpec(lr),
		betaSpec("momentum", 0.95),
		flagSpec("nesterov", true),
		wdSpec(wd),
		{key: "ns_steps", def: DefaultNSSteps, check: positiveInt},
		flagSpec("channel_first", false),
	}
}

// muonCore is the embedded generic optimizer of Muon (an alias, so the field stays unexported).
type muonCore = Optimizer

// Muon is MomentUm Orthogonalized by Newton–Schulz, a solver for the 2-D hidden matrices of a network
// (attention and MLP projections); embeddings, the output head, norm gains and biases belong to another
// solver (see NewMuonWithAdamW). Each step replaces the momentum of a matrix by an approximately
// orthogonal matrix with the same singular vectors (NewtonSchulz). A parameter that is not 2-D is refused
// with an error naming it, before anything changes. Two variants exist, built by NewMuon (kind "muon") and
// NewMuonMoonlight (kind "muon_moonlight"). The state is one momentum buffer per matrix (1P); the
// Newton–Schulz work matrices (reused across steps, see WorkspaceBytes) are scratch, not state.
type Muon struct {
	*muonCore
	coefs []NSCoefs
}

// NewMuon returns Keller Jordan's Muon ("Muon: An optimizer for hidden layers in neural networks";
// reference KellerJordan/Muon muon.py, SingleDeviceMuon → muon_update → zeropower_via_newtonschulz5):
//
//	M ← M + (1−μ)·(G − M)                      (torch lerp_, an EMA)
//	U = G + μ·(M − G) if nesterov, else U = M
//	O = NS(U, ns_steps) · sqrt(max(1, fan_out/fan_in))
//	p ← p·(1 − lr·wd);  p ← p − lr·O            (decoupled decay with the unadjusted lr)
//
// where NS is NewtonSchulz (Frobenius pre-normalisation, quintic (3.4445, −4.7750, 2.0315)) and
// fan_out/fan_in = cols/rows in gradlab's (in, out) layout, rows/cols with "channel_first" (see the
// layout note above). The reference runs NS in bfloat16 on GPUs; here it runs in the parameter's dtype.
// Hyperparameters (defaults): lr (0.02), momentum (0.95), nesterov (true), weight_decay (0),
// ns_steps (5), channel_first (false).
func NewMuon(opts ...Option) (*Muon, error) { return newMuon("muon", muonSpecs(0.02, 0), opts) }

// NewMuonMoonlight returns the Moonlight variant of Muon (Liu et al., "Muon is Scalable for LLM
// Training"; reference MoonshotAI/Moonlight examples/toy_train.py, class Muon):
//
//	B ← μ·B + G                                (plain sum)
//	U = G + μ·B if nesterov, else U = B
//	O = NS(U, ns_steps)
//	p ← p·(1 − lr·wd);  p ← p − lr·0.2·sqrt(max(rows, cols))·O
//
// A near-orthogonal A×B matrix has RMS ≈ 1/sqrt(max(A, B)), so the factor 0.2·sqrt(max(A, B)) gives the
// update an RMS of about 0.2, like AdamW's: AdamW's learning rate and weight decay carry over. The factor
// is symmetric, so the layout does not matter ("channel_first" is accepted and has no effect).
// Hyperparameters (defaults, the reference's): lr (1e-3), momentum (0.95), nesterov (true),
// weight_decay (0.1), ns_steps (5), channel_first (false).
func NewMuonMoonlight(opts ...Option) (*Muon, error) {
	return newMuon("muon_moonlight", muonSpecs(1e-3, 0.1), opts)
}

func newMuon(kind string, specs []hyperSpec, opts []Option) (*Muon, error) {
	o, err := newOptimizer(kind, specs, opts)
	if err != nil {
		return nil, err
	}
	return &Muon{muonCore: o}, nil
}

func init() {
	for _, kind := range []string{"muon", "muon_moonlight"} {
		moonlight := kind == "muon_moonlight"
		ruleFactories[kind] = func(c *config) (rule, error) {
			return &muonRule{moonlight: moonlight, mu: c.f("momentum"), nesterov: c.b("nesterov"),
				steps: int(c.f("ns_steps")), channelFirst: c.b("channel_first")}, nil
		}
	}
	register("muon", func(opts ...Option) (Solver, error) {
		m, err := NewMuon(opts...)
		if err != nil {
			return nil, err
		}
		return m, nil
	})
	register("muon_moonlight", func(opts ...Option) (Solver, error) {
		m, err := NewMuonMoonlight(opts...)
		if err != nil {
			return nil, err
		}
		return m, nil
	})
}

// SetNSCoefs sets per-step Newton–Schulz coefficients (see NewtonSchulz.Coefs: step k uses
// coefs[min(k, len−1)]; none restores NSQuintic). They are configuration, not state: SaveState does not
// record them, so set them again on a solver that loads a state.
func (m *Muon) SetNSCoefs(coefs ...NSCoefs) error {
	for k, c := range coefs {
		if !isFinite(c.A) || !isFinite(c.B) || !isFinite(c.C) {
			return errors.Errorf("%s: Newton-Schulz coefficients of step %d are not finite: %+v", m.cfg.kind, k, c)
		}
	}
	m.coefs = append([]NSCoefs(nil), coefs...)
	m.muonRule().coefs = m.coefs
	return nil
}

// WorkspaceBytes returns the memory of the Newton–Schulz work matrices and the update scratch (sized by
// the largest matrix seen; not optimizer state).
func (m *Muon) WorkspaceBytes() int64 {
	r := m.muonRule()
	n := int64(cap(r.u32))*4 + int64(cap(r.u64))*8
	if r.ns32 != nil {
		n += r.ns32.WorkspaceBytes()
	}
	if r.ns64 != nil {
		n += r.ns64.WorkspaceBytes()
	}
	return n
}

func (m *Muon) muonRule() *muonRule { return m.rule.(*muonRule) }

// Step updates every matrix and zeroes the gradients. Parameters that are not 2-D are refused (error
// naming the parameter) before anything changes; other errors are those of every gradlab solver.
func (m *Muon) Step(params []G.ValueGrad) error {
	if err := m.validate(params); err != nil {
		return err
	}
	return m.muonCore.Step(params)
}

// validate checks params (names, shapes, dtypes, 2-D) without changing anything.
func (m *Muon) validate(params []G.ValueGrad) error {
	views, err := m.reg.resolve(params)
	if err != nil {
		return errors.Wrap(err, m.cfg.kind)
	}
	for i := range views {
		if sh := views[i].shape; sh.Dims() != 2 {
			return errors.Errorf("%s: parameter %q has shape %v: Muon updates 2-D hidden matrices only; "+
				"give embeddings, the output head, norms and biases to AdamW (see NewMuonWithAdamW)", m.cfg.kind, views[i].name, sh)
		}
	}
	return nil
}

// loadState loads as the generic optimizer does, then keeps the Newton–Schulz coefficients and the
// workspace (the loaded configuration builds a fresh rule).
func (m *Muon) loadState(prefix string, r *stateReader) (func(), error) {
	old := m.muonRule()
	commit, err := m.muonCore.loadState(prefix, r)
	if err != nil {
		return nil, err
	}
	return func() {
		commit()
		nr := m.muonRule()
		nr.coefs = m.coefs
		nr.ns32, nr.ns64, nr.u32, nr.u64 = old.ns32, old.ns64, old.u32, old.u64
	}, nil
}

// muonRule is the tensorwise rule of both Muon variants.
type muonRule struct {
	moonlight    bool
	mu           float64
	nesterov     bool
	steps        int
	channelFirst bool
	coefs        []NSCoefs
	ns32         *NewtonSchulz[float32]
	ns64         *NewtonSchulz[float64]
	u32          []float32
	u64          []float64
}

func (r *muonRule) bufferNames() []string  { return []string{"momentum_buffer"} }
func (r *muonRule) bufferInit(int) float64 { return 0 }

func (r *muonRule) update32(v *view, st *paramState, lr, wd float64) {
	if v.shape.Dims() != 2 { // refused by Muon.validate; kept safe for direct use of the rule
		clear(v.g32)
		return
	}
	if r.ns32 == nil {
		r.ns32 = NewNewtonSchulz[float32]()
	}
	r.ns32.Steps, r.ns32.Coefs = r.steps, r.coefs
	r.u32 = growSlice(r.u32, len(v.w32))
	muonUpdate(r, r.ns32, v.w32, v.g32, st.b32[0], r.u32, v.shape[0], v.shape[1], lr, wd)
}

func (r *muonRule) update64(v *view, st *paramState, lr, wd float64) {
	if v.shape.Dims() != 2 {
		clear(v.g64)
		return
	}
	if r.ns64 == nil {
		r.ns64 = NewNewtonSchulz[float64]()
	}
	r.ns64.Steps, r.ns64.Coefs = r.steps, r.coefs
	r.u64 = growSlice(r.u64, len(v.w64))
	muonUpdate(r, r.ns64, v.w64, v.g64, st.b64[0], r.u64, v.shape[0], v.shape[1], lr, wd)
}

// muonLerp is torch's lerp(self, end, w) as its CPU kernel computes it: self + w·(end − self) for
// |w| < 0.5, else end − (end − self)·(1 − w).
func muonLerp[T Float](self, end, w T) T {
	if abs(w) < 0.5 {
		return self + w*(end-self)
	}
	return end - (end-self)*(1-w)
}

func muonUpdate[T Float](r *muonRule, ns *NewtonSchulz[T], p, g, buf, u []T, rows, cols int, lr, wd float64) {
	mu := T(r.mu)
	if r.moonlight {
		for i, gi := range g {
			b := buf[i]*mu + gi
			buf[i] = b
			if r.nesterov {
				u[i] = gi + mu*b
			} else {
				u[i] = b
			}
		}
	} else {
		w := T(1 - r.mu)
		for i, gi := range g {
			m := muonLerp(buf[i], gi, w)
			buf[i] = m
			if r.nesterov {
				u[i] = muonLerp(gi, m, mu)
			} else {
				u[i] = m
			}
		}
	}
	_ = ns.Apply(u, u, rows, cols) // shapes and settings are valid by construction
	shrink := T(1 - lr*wd)
	if r.moonlight {
		step := T(lr * (0.2 * math.Sqrt(float64(max(rows, cols)))))
		for i, o := range u {
			p[i] = p[i]*shrink - step*o
			g[i] = 0
		}
		return
	}
	fanIn, fanOut := rows, cols
	if r.channelFirst {
		fanIn, fanOut = cols, rows
	}
	scale, lrT := T(math.Sqrt(math.Max(1, float64(fanOut)/float64(fanIn)))), T(lr)
	for i, o := range u {
		p[i] = p[i]*shrink - lrT*(o*scale)
		g[i] = 0
	}
}

// DefaultMuonAdamWNames are the name fragments (matched case-insensitively anywhere in the name) that send
// a 2-D parameter to AdamW in NewMuonWithAdamW: embeddings and the output head. Note that "output" also
// matches hidden matrices named like "attn.output.weight"; pass MuonAdamWConfig.AdamWNames or Match for
// such naming schemes.
var DefaultMuonAdamWNames = []string{"embed", "wte", "tok", "head", "lm_head", "output"}

// MuonAdamWConfig configures NewMuonWithAdamW.
type MuonAdamWConfig struct {
	// Muon are the options of the Muon side (kind "muon", or "muon_moonlight" with Moonlight).
	Muon []Option
	// AdamW are the options of the AdamW side, applied after the defaults described in NewMuonWithAdamW.
	AdamW []Option
	// Moonlight selects the Moonlight variant, whose lr and weight_decay (and schedule, if any) the AdamW
	// side shares.
	Moonlight bool
	// AdamWNames are the name fragments that send a 2-D parameter to AdamW (case-insensitive substring
	// match); nil means DefaultMuonAdamWNames, an empty non-nil slice means none.
	AdamWNames []string
	// Match, if set, replaces the routing rule: the parameters it accepts go to Muon (which refuses
	// anything that is not 2-D), the rest to AdamW.
	Match Match
}

// NewMuonWithAdamW returns the usual Muon set-up as one solver: a Groups with the route "muon" for the 2-D
// hidden matrices and the route "adamw" for everything else (embeddings, output head, norm gains, biases:
// every parameter that is not 2-D, and 2-D parameters whose name contains one of cfg.AdamWNames). The
// rule follows the references: Keller Jordan's MuonWithAuxAdam (KellerJordan/Muon muon.py) takes "hidden
// matrices, not embed" for Muon and embeddings, head and scalars for Adam; Moonlight's get_optimizer
// (MoonshotAI/Moonlight examples/toy_train.py) takes ndim ≥ 2 without embed_tokens or lm_head.
//
// The AdamW side (NewAdamW, torch.optim.AdamW's step form) defaults to the reference's auxiliary Adam:
// lr 3e-4, betas (0.9, 0.95), eps 1e-10, weight_decay 0 (SingleDeviceMuonWithAuxAdam). With Moonlight
// the Muon side is NewMuonMoonlight and the AdamW side takes its lr, weight_decay and schedule, with betas
// (0.9, 0.95) and eps 1e-8 (the reference's adamw_betas and adamw_eps). Moonlight's own AdamW writes the
// step as p ← p − lr·(sqrt(bc2)/bc1)·m/(sqrt(v) + eps), which is NewAdamW's form with eps scaled by
// 1/sqrt(bc2): the two differ only while sqrt(v) is of the order of eps. Options in cfg.AdamW override
// these defaults (an explicit lr or weight_decay there ends the sharing). Groups.SetLR scales both sides
// together; Group("muon") and Group("adamw") reach each.
func NewMuonWithAdamW(cfg MuonAdamWConfig) (*Groups, error) {
	var mu *Muon
	var err error
	if cfg.Moonlight {
		mu, err = NewMuonMoonlight(cfg.Muon...)
	} else {
		mu, err = NewMuon(cfg.Muon...)
	}
	if err != nil {
		return nil, err
	}
	aopts := []Option{WithLR(3e-4), WithBetas(0.9, 0.95), WithEps(1e-10), WithWeightDecay(0)}
	if cfg.Moonlight {
		aopts = []Option{WithLR(mu.cfg.f("lr")), WithBetas(0.9, 0.95), WithEps(1e-8), WithWeightDecay(mu.cfg.f("weight_decay"))}
		if mu.cfg.sched != nil {
			aopts = append(aopts, WithSchedule(mu.cfg.sched))
		}
	}
	aw, err := NewAdamW(append(aopts, cfg.AdamW...)...)
	if err != nil {
		return nil, errors.Wrap(err, "muon+adamw: adamw side")
	}
	match := cfg.Match
	if match == nil {
		names := cfg.AdamWNames
		if names == nil {
			names = DefaultMuonAdamWNames
		}
		names = append([]string(nil), names...)
		match = func(name string, shape tensor.Shape) bool {
			if shape.Dims() != 2 {
				return false
			}
			for _, frag := range names {
				if muonContainsFold(name, frag) {
					return false
				}
			}
			return true
		}
	}
	return NewGroups(Route{Name: "muon", Match: match, Solver: mu}, Route{Name: "adamw", Match: MatchAll, Solver: aw})
}

// muonContainsFold reports whether s contains sub, ignoring case, without allocating.
func muonContainsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
