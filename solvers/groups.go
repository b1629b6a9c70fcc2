package solvers

import (
	"strings"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// Match selects parameters by name and shape.
type Match func(name string, shape tensor.Shape) bool

// MatchAll matches every parameter.
func MatchAll(string, tensor.Shape) bool { return true }

// MatchMatrices matches parameters with exactly two dimensions.
func MatchMatrices(_ string, shape tensor.Shape) bool { return shape.Dims() == 2 }

// MatchNamePrefix matches parameters whose name starts with one of the prefixes.
func MatchNamePrefix(prefixes ...string) Match {
	return func(name string, _ tensor.Shape) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
}

// Route sends the parameters that Match selects to Solver. Name identifies the group in errors and state
// files.
type Route struct {
	Name   string
	Match  Match
	Solver Solver
}

// Groups is one solver that routes each parameter to another by a rule (torch's parameter groups, optax's
// multi_transform): the first route whose Match accepts a parameter owns it, each route with its own
// solver and hyperparameters (for example Muon for hidden matrices and AdamW for embeddings, head, norms
// and biases). Every parameter must match some route. Before any group steps, all parameters are checked
// (names, shapes, dtypes against each group's state, finite gradients), so a refused step changes nothing.
type Groups struct {
	routes    []Route
	views     registry
	buckets   [][]G.ValueGrad
	nonFinite NonFinitePolicy
}

// NewGroups builds a router over routes (at least one; names unique and non-empty; solvers non-nil).
func NewGroups(routes ...Route) (*Groups, error) {
	if len(routes) == 0 {
		return nil, errors.New("groups: no routes")
	}
	seen := map[string]bool{}
	for i, r := range routes {
		if r.Name == "" || seen[r.Name] {
			return nil, errors.Errorf("groups: route %d needs a unique non-empty name", i)
		}
		seen[r.Name] = true
		if r.Solver == nil {
			return nil, errors.Errorf("groups: route %q has no solver", r.Name)
		}
		if r.Match == nil {
			routes[i].Match = MatchAll
		}
	}
	return &Groups{routes: append([]Route(nil), routes...), buckets: make([][]G.ValueGrad, len(routes))}, nil
}

// SetNonFinite sets what happens when a gradient is not finite (default: refuse with an error).
func (g *Groups) SetNonFinite(p NonFinitePolicy) { g.nonFinite = p }

// Kind returns "groups".
func (g *Groups) Kind() string { return "groups" }

// Group returns the solver of the named route, or nil.
func (g *Groups) Group(name string) Solver {
	for _, r := range g.routes {
		if r.Name == name {
			return r.Solver
		}
	}
	return nil
}

// Route returns the name of the route that owns a parameter of this name and shape ("" if none).
func (g *Groups) Route(name string, shape tensor.Shape) string {
	for _, r := range g.routes {
		if r.Match(name, shape) {
			return r.Name
		}
	}
	return ""
}

// LR returns the first group's learning rate.
func (g *Groups) LR() float64 { return g.routes[0].Solver.LR() }

// SetLR rescales every group's learning rate by lr/LR(), keeping the ratios between groups (so the first
// group gets lr). Set one group's rate with Group(name).SetLR.
func (g *Groups) SetLR(lr float64) error {
	cur := g.LR()
	if cur == 0 {
		return errors.New("groups: the first group's learning rate is 0; set each group's rate with Group(name).SetLR")
	}
	f := lr / cur
	for _, r := range g.routes {
		if err := r.Solver.SetLR(r.Solver.LR() * f); err != nil {
			return errors.Wrapf(err, "group %q", r.Name)
		}
	}
	return nil
}

// SetSchedule returns an error: groups usually need different schedules; set them with Group(name).SetSchedule.
func (g *Groups) SetSchedule(schedule.Schedule) error {
	return errors.New("groups: set schedules per group with Group(name).SetSchedule")
}

// StateBytes sums the groups' state sizes.
func (g *Groups) StateBytes() int64 {
	var n int64
	for _, r := range g.routes {
		n += r.Solver.StateBytes()
	}
	return n
}

// Step routes the parameters and steps every group that received some.
func (g *Groups) Step(params []G.ValueGrad) error {
	views, err := g.views.resolve(params)
	if err != nil {
		return errors.Wrap(err, "groups")
	}
	for i := range g.buckets {
		g.buckets[i] = g.buckets[i][:0]
	}
	for i := range views {
		v := &views[i]
		k := -1
		for j, r := range g.routes {
			if r.Match(v.name, v.shape) {
				k = j
				break
			}
		}
		if k < 0 {
			return errors.Errorf("groups: parameter %q (shape %v) matches no route", v.name, v.shape)
		}
		g.buckets[k] = append(g.buckets[k], params[i])
	}
	if skip, err := g.views.screen(views, g.nonFinite); skip || err != nil {
		return errors.Wrap(err, "groups")
	}
	for k, r := range g.routes {
		if vd, ok := r.Solver.(validator); ok && len(g.buckets[k]) > 0 {
			if err := vd.validate(g.buckets[k]); err != nil {
				return errors.Wrapf(err, "group %q", r.Name)
			}
		}
	}
	for k, r := range g.routes {
		if len(g.buckets[k]) == 0 {
			continue
		}
		if err := r.Solver.Step(g.buckets[k]); err != nil {
			return errors.Wrapf(err, "group %q", r.Name)
		}
	}
	return nil
}

func (g *Groups) validate(params []G.ValueGrad) error {
	_, err := g.views.resolve(params)
	return err
}

func (g *Groups) saveState(prefix string, w *stateWriter) error {
	names := make([]string, len(g.routes))
	for i, r := range g.routes {
		names[i] = r.Name
	}
	if err := w.putMeta(prefix+"kind", "groups"); err != nil {
		return err
	}
	if err := w.putMeta(prefix+"groups", names); err != nil {
		return err
	}
	for _, r := range g.routes {
		st, ok := r.Solver.(stateful)
		if !ok {
			return errors.Errorf("group %q: solver %T cannot save its state", r.Name, r.Solver)
		}
		if err := st.saveState(prefix+"group."+r.Name+".", w); err != nil {
			return err
		}
	}
	return nil
}

func (g *Groups) loadState(prefix string, r *stateReader) (func(), error) {
	if err := checkKind(prefix, "groups", r); err != nil {
		return nil, err
	}
	var names []string
	if err := r.getMeta(prefix+"groups", &names); err != nil {
		return nil, err
	}
	if len(names) != len(g.routes) {
		return nil, errors.Errorf("state file has groups %v, this solver has %d groups", names, len(g.routes))
	}
	var commits []func()
	for i, rt := range g.routes {
		if names[i] != rt.Name {
			return nil, errors.Errorf("state file group %d is %q, this solver's is %q", i, names[i], rt.Name)
		}
		st, ok := rt.Solver.(stateful)
		if !ok {
			return nil, errors.Errorf("group %q: solver %T cannot load state", rt.Name, rt.Solver)
		}
		c, err := st.loadState(prefix+"group."+rt.Name+".", r)
		if err != nil {
			return nil, errors.Wrapf(err, "group %q", rt.Name)
		}
		commits = append(commits, c)
	}
	return func() {
		for _, c := range commits {
			c()
		}
	}, nil
}
