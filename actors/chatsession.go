package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/store"
)

const (
	// StreamChat is the JetStream stream holding every chat session, one stream message per chat
	// message on subject chat.<tenant>.<session>.
	StreamChat = "CHAT"
	// storeTimeout bounds one JetStream operation of a grain.
	storeTimeout = 5 * time.Second
	// storeAttempt bounds one try of a chat session's JetStream call, retried until storeTimeout.
	// While the stream's leader is being elected (its server died: 4–9 s of raft election), requests
	// go unanswered rather than fail; a short attempt re-sends soon after the new leader is up,
	// instead of waiting for one long timeout. Re-sending is safe: reads are idempotent and every
	// publish carries a message ID that JetStream deduplicates.
	storeAttempt = time.Second
	// slowReload is how long loading a session may take before it is logged.
	slowReload = time.Second
	// maxConflicts bounds how often one request reloads after a "wrong last sequence" refusal.
	maxConflicts = 10
)

// chatSubject is the subject of a session's messages. Tenant and session IDs are validated to be
// subject-safe ([a-z0-9-] and [A-Za-z0-9_-]).
func chatSubject(tenantID, sessionID string) string {
	return "chat." + tenantID + "." + sessionID
}

// storedMessage is a chat message with its stream sequence.
type storedMessage struct {
	seq uint64
	msg *pb.ChatMessage
}

// appendMsgID is the JetStream message ID of message i of an Append: stored as the message's
// Nats-Msg-Id header, so a re-sent Append (its member left before answering) is recognised both by
// a grain that loaded the message and, within the stream's duplicate window, by JetStream itself.
func appendMsgID(requestID string, i int) string {
	return requestID + "." + strconv.Itoa(i)
}

// chatSession is the ChatSession grain, identity <tenant>:<sessionId>. Its state is the session's
// messages in stream CHAT, loaded on activation. Every write is acknowledged by JetStream before the
// grain replies (output gate) and is conditional on the last subject sequence this activation saw, so
// a duplicate activation during membership churn cannot interleave or overwrite: its write is refused
// with "wrong last sequence", and it reloads and retries after the other's writes.
type chatSession struct {
	deps      Deps
	tenantID  string
	sessionID string
	subject   string

	stream  jetstream.Stream
	loaded  bool
	msgs    []storedMessage // in stream order, which is time order
	lastSeq uint64          // last subject sequence this activation saw; 0 = none
	// msgIDs are the message IDs (appendMsgID) of the messages this activation loaded or stored.
	msgIDs map[string]struct{}
	// traceID is the trace ID of the request being handled (the grain handles one at a time), for
	// the log lines written about it; "" between requests.
	traceID string
	// stopping: passivateIfMoved queued this activation's stop.
	stopping bool
}

func newChatSession(deps Deps, tenantID, sessionID string) *chatSession {
	s := &chatSession{deps: deps}
	if tenantID != "" {
		s.setIdentity(tenantID, sessionID)
	}
	return s
}

func (s *chatSession) setIdentity(tenantID, sessionID string) {
	s.tenantID, s.sessionID = tenantID, sessionID
	s.subject = chatSubject(tenantID, sessionID)
}

func (s *chatSession) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(s.deps.IdleTimeout)
	case *cluster.ClusterInit:
		if s.subject == "" && msg.Identity != nil {
			tenantID, sessionID, err := parseSessionIdentity(msg.Identity.Identity)
			if err != nil {
				s.deps.Logger.Error().Err(err).Str("identity", msg.Identity.Identity).Msg("chat session: bad identity")
				return
			}
			s.setIdentity(tenantID, sessionID)
		}
	case *actor.ReceiveTimeout:
		// Passivate: the state is in JetStream and comes back on the next activation.
		ctx.Poison(ctx.Self())
	case *pb.AppendRequest:
		s.traceID = msg.GetTraceId()
		ctx.Respond(&pb.AppendResponse{Error: errString(s.append(msg))})
		s.passivateIfMoved(ctx)
	case *pb.HistoryRequest:
		s.traceID = msg.GetTraceId()
		msgs, err := s.history(msg)
		ctx.Respond(&pb.HistoryResponse{Messages: msgs, Error: errString(err)})
		s.passivateIfMoved(ctx)
	case *pb.ClearRequest:
		s.traceID = msg.GetTraceId()
		ctx.Respond(&pb.ClearResponse{Error: errString(s.clear())})
		s.passivateIfMoved(ctx)
	}
}

// passivateIfMoved ends a request: it stops this activation when this member does not own the
// session under its current topology (Placement), so that a duplicate activation started by a
// requester with a stale topology does not outlive the change. The requests already queued are
// answered first (the stop is queued behind them); later ones are re-sent to the owner.
func (s *chatSession) passivateIfMoved(ctx actor.Context) {
	defer func() { s.traceID = "" }()
	if s.subject == "" || s.deps.Placement.Owns(KindChatSession, s.tenantID+":"+s.sessionID) || s.stopping {
		return
	}
	s.stopping = true
	s.deps.Logger.Info().Str("subject", s.subject).Str("traceId", s.traceID).
		Msg("chat session: this member does not own the session; passivating")
	ctx.Poison(ctx.Self())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *chatSession) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// retryStore calls fn with attempts of at most storeAttempt until it succeeds, fails for good, or
// storeTimeout passed. Only unanswered requests (timeouts, no responders, 503s of a stream without
// a leader) are retried; fn must be safe to repeat.
//
// Every retry is logged (op names the call), so slow stores show in the logs, not only as slow
// requests.
func retryStore[T any](s *chatSession, op string, fn func(context.Context) (T, error)) (T, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return store.RetryValue(ctx, store.Retry{Attempt: storeAttempt, OnRetry: func(attempt int, err error) {
		s.deps.Logger.Warn().Err(err).Str("op", op).Str("subject", s.subject).Str("traceId", s.traceID).
			Int("attempt", attempt).Dur("elapsed", time.Since(start)).Msg("chat session: store did not answer; retrying")
	}}, fn)
}

// ensureLoaded loads the session on the first request of an activation.
func (s *chatSession) ensureLoaded() error {
	if s.subject == "" {
		return errors.New("chat session: no identity")
	}
	if s.loaded {
		return nil
	}
	return s.reload()
}

// refresh reloads the session when the stream's last message on its subject is not the one this
// activation last saw: another activation wrote (or cleared) since.
//
// Why every read asks the stream: protoactor's disthash spawns an activation on whichever member a
// requester asks, and a requester with a stale topology (a member just crashed or joined) can ask
// a member that is no longer the owner. That activation is not re-checked until the next topology
// change, so it can live on beside the owner's for its idle timeout. Writes are fenced (conditional
// on the last subject sequence), but a read answered from its memory missed the owner's writes:
// the crash soak read histories without messages acknowledged seconds before. One request to the
// stream leader per read makes every read see every acknowledged write.
func (s *chatSession) refresh() error {
	last, err := retryStore(s, "last message", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.stream.GetLastMsgForSubject(ctx, s.subject)
	})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		if s.lastSeq == 0 {
			return nil
		}
	case err != nil:
		return fmt.Errorf("chat session: load %s: %w", s.subject, err)
	case last.Sequence == s.lastSeq:
		return nil
	}
	return s.reload()
}

// reload replaces the in-memory state with every message of the session's subject.
//
// The reads go to the stream leader (CHAT has no direct gets, see EnsureStreams): a follower that
// lags behind could serve an activation a history without the newest acknowledged messages.
func (s *chatSession) reload() error {
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > slowReload {
			s.deps.Logger.Warn().Str("subject", s.subject).Str("traceId", s.traceID).Int("messages", len(s.msgs)).
				Dur("elapsed", d).Msg("chat session: slow load")
		}
	}()
	if s.stream == nil {
		st, err := retryStore(s, "stream info", func(ctx context.Context) (jetstream.Stream, error) {
			st, err := s.deps.JS.Stream(ctx, StreamChat)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				if err := EnsureStreams(ctx, s.deps.JS, s.deps.Replicas); err != nil {
					return nil, err
				}
				st, err = s.deps.JS.Stream(ctx, StreamChat)
			}
			return st, err
		})
		if err != nil {
			return fmt.Errorf("chat session: stream %s: %w", StreamChat, err)
		}
		s.stream = st
	}
	s.msgs, s.lastSeq, s.loaded = s.msgs[:0], 0, false
	s.msgIDs = map[string]struct{}{}
	last, err := retryStore(s, "stream info", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.stream.GetLastMsgForSubject(ctx, s.subject)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		s.loaded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("chat session: load %s: %w", s.subject, err)
	}
	for seq := uint64(1); seq <= last.Sequence; {
		raw, err := retryStore(s, "get message", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			return s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.subject))
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("chat session: load %s at %d: %w", s.subject, seq, err)
		}
		m := &pb.ChatMessage{}
		if err := proto.Unmarshal(raw.Data, m); err != nil {
			return fmt.Errorf("chat session: decode %s seq %d: %w", s.subject, raw.Sequence, err)
		}
		s.msgs = append(s.msgs, storedMessage{seq: raw.Sequence, msg: m})
		if id := raw.Header.Get(jetstream.MsgIDHeader); id != "" {
			s.msgIDs[id] = struct{}{}
		}
		seq = raw.Sequence + 1
	}
	s.lastSeq = last.Sequence
	s.loaded = true
	return nil
}

// append stores the batch in order, each message conditional on the last subject sequence this
// activation saw. On "wrong last sequence" another activation wrote in between: reload (which brings
// its messages in) and continue with the messages not yet stored, so nothing is overwritten and this
// batch lands after the other's writes.
//
// Message i is stored under the message ID appendMsgID(request ID, i) and skipped when this
// activation already holds that ID, so an Append re-sent after its first grain's member died stores
// each message once. If JetStream reports the ID as a duplicate that this activation has not loaded
// (the first grain's write landed after this one loaded), reload brings it in.
func (s *chatSession) append(req *pb.AppendRequest) error {
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		// Still give every message an ID, so that re-sending a publish whose ack was lost is safe.
		requestID = uuid.NewString()
	}
	now := s.deps.Now().UnixMilli()
	pending := req.GetMessages()
	conflicts := 0
	for len(pending) > 0 {
		i := len(req.GetMessages()) - len(pending)
		msgID := appendMsgID(requestID, i)
		if _, stored := s.msgIDs[msgID]; stored {
			pending = pending[1:]
			continue
		}
		if i == 0 {
			// Checked again after every reload: another activation's writes count too.
			if err := s.checkLastResponse(req); err != nil { // responses.go
				return err
			}
		}
		m := pending[0]
		if m.GetTimestampMs() == 0 {
			m.TimestampMs = now
		}
		// History is oldest first by stream order, and ?before= pages by timestamp: keep timestamps
		// non-decreasing in stream order, or concurrent exchanges (stamped when they started, stored
		// when they finished) would make paging skip or repeat messages.
		if n := len(s.msgs); n > 0 {
			m.TimestampMs = max(m.TimestampMs, s.msgs[n-1].msg.GetTimestampMs())
		}
		data, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("chat session: encode: %w", err)
		}
		expected := s.lastSeq
		ack, err := retryStore(s, "publish", func(ctx context.Context) (*jetstream.PubAck, error) {
			return s.deps.JS.Publish(ctx, s.subject, data,
				jetstream.WithMsgID(msgID),
				jetstream.WithExpectStream(StreamChat),
				jetstream.WithExpectLastSequencePerSubject(expected))
		})
		if err == nil && ack.Duplicate {
			// Stored before, by an earlier try of this Append (possibly on another member).
			if s.lastSeq >= ack.Sequence {
				// Loaded, then removed again (retention, clear): do not store it twice.
				s.msgIDs[msgID] = struct{}{}
				pending = pending[1:]
				continue
			}
			conflicts++
			if conflicts > maxConflicts {
				return fmt.Errorf("chat session %s: gave up after %d concurrent-write conflicts", s.subject, maxConflicts)
			}
			if err := s.reload(); err != nil {
				return err
			}
			if _, ok := s.msgIDs[msgID]; !ok {
				// Gone again by the time of the reload: it was stored once, which is what counts.
				s.msgIDs[msgID] = struct{}{}
			}
			continue
		}
		if store.IsWrongLastSequence(err) {
			conflicts++
			if conflicts > maxConflicts {
				return fmt.Errorf("chat session %s: gave up after %d concurrent-write conflicts: %w", s.subject, maxConflicts, err)
			}
			s.deps.Logger.Warn().Str("traceId", s.traceID).Str("subject", s.subject).Uint64("expectedSeq", s.lastSeq).
				Msg("chat session: write refused (another activation wrote); reloading")
			conflictBackoff(conflicts)
			if err := s.reload(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("chat session %s: append: %w", s.subject, err)
		}
		s.msgs = append(s.msgs, storedMessage{seq: ack.Sequence, msg: m})
		s.lastSeq = ack.Sequence
		s.msgIDs[msgID] = struct{}{}
		pending = pending[1:]
	}
	s.applyRetention(req.GetRetention())
	return nil
}

// conflictBackoff pauses a random 0–10·n ms before the nth retry after a refused write. Two
// activations of one session that both take a stream of appends (after a crash, until the stale one
// passivates) otherwise refuse each other in lockstep: the crash soak saw requests give up after
// five conflicts in a row within 100 ms. The random pause lets one of them win the next round.
func conflictBackoff(n int) {
	time.Sleep(time.Duration(rand.Int64N(int64(10*n)+1)) * time.Millisecond)
}

// history applies retention, then returns the newest limit messages older than before, oldest first.
func (s *chatSession) history(req *pb.HistoryRequest) ([]*pb.ChatMessage, error) {
	if s.loaded {
		if err := s.refresh(); err != nil {
			return nil, err
		}
	} else if err := s.ensureLoaded(); err != nil {
		return nil, err
	}
	s.applyRetention(req.GetRetention())
	kept := s.retained(req.GetRetention())
	before := req.GetBeforeMs()
	out := make([]*pb.ChatMessage, 0, len(s.msgs))
	for i, sm := range s.msgs {
		if kept[i] && (before <= 0 || sm.msg.GetTimestampMs() < before) {
			out = append(out, sm.msg)
		}
	}
	if l := int(req.GetLimit()); l > 0 && len(out) > l {
		out = out[len(out)-l:]
	}
	return out, nil
}

// retained marks which messages the retention keeps: not older than MaxAge, and among those the
// newest MaxMessages.
func (s *chatSession) retained(r *pb.Retention) []bool {
	kept := make([]bool, len(s.msgs))
	var cutoff int64
	if age := r.GetMaxAgeMs(); age > 0 {
		cutoff = s.deps.Now().UnixMilli() - age
	}
	capacity := int(r.GetMaxMessages())
	n := 0
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.msgs[i].msg.GetTimestampMs() < cutoff {
			continue
		}
		if capacity > 0 && n >= capacity {
			continue
		}
		kept[i] = true
		n++
	}
	return kept
}

// applyRetention really removes what the retention drops from the stream: the dropped prefix with
// one subject purge up to the first kept sequence, stragglers (out-of-order timestamps) one by one.
// The in-memory state follows only once the store did, so a failed purge is retried next time;
// callers hide dropped messages meanwhile (history filters with retained).
func (s *chatSession) applyRetention(r *pb.Retention) {
	if r == nil || len(s.msgs) == 0 {
		return
	}
	kept := s.retained(r)
	first := 0
	for first < len(kept) && !kept[first] {
		first++
	}
	stragglers := 0
	for i := first; i < len(kept); i++ {
		if !kept[i] {
			stragglers++
		}
	}
	if first == 0 && stragglers == 0 {
		return
	}
	ctx, cancel := s.opContext()
	defer cancel()
	if first > 0 {
		upTo := s.lastSeq + 1
		if first < len(s.msgs) {
			upTo = s.msgs[first].seq
		}
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.subject), jetstream.WithPurgeSequence(upTo)); err != nil {
			s.deps.Logger.Error().Err(err).Str("traceId", s.traceID).Str("subject", s.subject).Msg("chat session: retention purge failed")
			return
		}
	}
	out := s.msgs[:0]
	for i, sm := range s.msgs {
		if kept[i] {
			out = append(out, sm)
			continue
		}
		if i < first {
			continue
		}
		if err := s.stream.DeleteMsg(ctx, sm.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			s.deps.Logger.Error().Err(err).Str("traceId", s.traceID).Str("subject", s.subject).Uint64("seq", sm.seq).Msg("chat session: retention delete failed")
			out = append(out, sm) // keep it so the next request retries
		}
	}
	clear(s.msgs[len(out):])
	s.msgs = out
	if len(s.msgs) == 0 {
		s.lastSeq = 0
	} else {
		s.lastSeq = s.msgs[len(s.msgs)-1].seq
	}
}

// clear purges the session's subject: the stored messages are erased, not only the in-memory copy.
func (s *chatSession) clear() error {
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	ctx, cancel := s.opContext()
	defer cancel()
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.subject)); err != nil {
		return fmt.Errorf("chat session %s: clear: %w", s.subject, err)
	}
	clear(s.msgs)
	s.msgs, s.lastSeq = s.msgs[:0], 0
	return nil
}
