package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/store"
)

const (
	// StreamChat is the JetStream stream holding every chat session on subject
	// chat.<tenant>.<session>: one stream message per chat message (payload pb.ChatMessage), or, for
	// an Append of several messages on a single-replica stream, one stream message holding them all
	// (header hdrMessages, payload pb.ChatMessages; see actors.proto).
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

// storedMessage is a chat message with its stream sequence and its JetStream message ID
// (appendMsgID; "" for a message stored without one). The messages of a group (one stream message
// holding several, see publishGroup) share the group's sequence, and each has its own ID
// appendMsgID(request ID, i), as if stored one by one.
type storedMessage struct {
	seq uint64
	id  string
	msg *pb.ChatMessage
}

// appendMsgID is the JetStream message ID of message i of an Append: stored as the message's
// Nats-Msg-Id header, so a re-sent Append (its member left before answering) is recognised both by
// a grain that loaded the message and, within the stream's duplicate window, by JetStream itself.
func appendMsgID(requestID string, i int) string {
	return requestID + "." + strconv.Itoa(i)
}

// hdrMessages marks a stream message that holds n ≥ 2 chat messages (payload pb.ChatMessages)
// instead of one (payload pb.ChatMessage).
const hdrMessages = "Crispy-Messages"

// groupMsgID is the JetStream message ID of an Append's n messages stored as one group:
// "<request ID>.0-<n-1>". It differs from every appendMsgID (whose suffix is digits only), so
// JetStream's duplicate detection never confuses a group with a message stored on its own.
func groupMsgID(requestID string, n int) string {
	return appendMsgID(requestID, 0) + "-" + strconv.Itoa(n-1)
}

// groupMemberIDs are the message IDs of a group's n messages, appendMsgID(request ID, i), derived
// from the group's message ID; "" each if that is not a groupMsgID.
func groupMemberIDs(groupID string, n int) []string {
	ids := make([]string, n)
	requestID, ok := strings.CutSuffix(groupID, groupMsgID("", n))
	if !ok {
		return ids
	}
	for i := range ids {
		ids[i] = appendMsgID(requestID, i)
	}
	return ids
}

// appendStored decodes one stream message of the CHAT stream and appends its chat messages to dst,
// by format: one pb.ChatMessage, or with header hdrMessages, a pb.ChatMessages group.
func appendStored(dst []storedMessage, raw *jetstream.RawStreamMsg) ([]storedMessage, error) {
	msgID := raw.Header.Get(jetstream.MsgIDHeader)
	count := raw.Header.Get(hdrMessages)
	if count == "" {
		m := &pb.ChatMessage{}
		if err := proto.Unmarshal(raw.Data, m); err != nil {
			return dst, err
		}
		return append(dst, storedMessage{seq: raw.Sequence, id: msgID, msg: m}), nil
	}
	group := &pb.ChatMessages{}
	if err := proto.Unmarshal(raw.Data, group); err != nil {
		return dst, err
	}
	n, err := strconv.Atoi(count)
	if err != nil || n != len(group.GetMessages()) {
		return dst, fmt.Errorf("header %s: %q, but %d messages", hdrMessages, count, len(group.GetMessages()))
	}
	ids := groupMemberIDs(msgID, n)
	for i, m := range group.GetMessages() {
		dst = append(dst, storedMessage{seq: raw.Sequence, id: ids[i], msg: m})
	}
	return dst, nil
}

// chatSession is the ChatSession grain, identity <tenant>:<sessionId>. Its state is the session's
// messages in stream CHAT, loaded on activation. Every write is acknowledged by JetStream before the
// grain replies (output gate) and is conditional on the last subject sequence this activation saw, so
// a duplicate activation during membership churn cannot interleave or overwrite: its write is refused
// with "wrong last sequence", and it reloads and retries after the other's writes.
//
// An activation stays in memory while its session is idle, up to a million per node, so its fields
// are kept to what a request needs (80 bytes): the tenant and session IDs are read from subject
// (identity), and the CHAT stream's handle is the node's (Deps.streams), not one per activation.
type chatSession struct {
	deps    *Deps  // shared by every activation of the node: a copy per session cost ~200 bytes
	subject string // chat.<tenant>.<session>; "" until the identity is known

	loaded bool
	// stopping: passivateIfMoved queued this activation's stop.
	stopping bool
	msgs     []storedMessage // in stream order, which is time order
	lastSeq  uint64          // last subject sequence this activation saw; 0 = none
	// removing is the retention removal running beside the grain (applyRetention); nil = none.
	removing *removal
	// traceID is the trace ID of the request being handled (the grain handles one at a time), for
	// the log lines written about it; "" between requests.
	traceID string
}

func newChatSession(deps *Deps, tenantID, sessionID string) *chatSession {
	s := &chatSession{deps: deps}
	if tenantID != "" {
		s.setIdentity(tenantID, sessionID)
	}
	return s
}

func (s *chatSession) setIdentity(tenantID, sessionID string) {
	s.subject = chatSubject(tenantID, sessionID)
}

// identity is the grain identity, <tenant>:<session>, from the subject: neither ID contains a dot
// (chatSubject).
func (s *chatSession) identity() string {
	return strings.Replace(strings.TrimPrefix(s.subject, "chat."), ".", ":", 1)
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
	case *actor.Stopped:
		releaseStopped(ctx)
		s.msgs = nil
	case *pb.AppendRequest:
		s.traceID = msg.GetTraceId()
		err := s.append(msg)
		ctx.Respond(&pb.AppendResponse{Error: errString(err)})
		if err == nil {
			// After the answer: what retention drops is already out of every history.
			s.applyRetention(ctx, msg.GetRetention())
		}
		s.passivateIfMoved(ctx)
	case *pb.HistoryRequest:
		s.traceID = msg.GetTraceId()
		msgs, err := s.history(msg)
		ctx.Respond(&pb.HistoryResponse{Messages: msgs, Error: errString(err)})
		if err == nil {
			s.applyRetention(ctx, msg.GetRetention())
		}
		s.passivateIfMoved(ctx)
	case *retentionDone:
		s.removed(msg)
		if msg.complete() {
			// What the requests answered while it ran dropped.
			s.applyRetention(ctx, msg.removal.retention)
		}
		ctx.Respond(retentionTaken{})
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
	if s.subject == "" || s.stopping || s.deps.Placement.Owns(KindChatSession, s.identity()) {
		return
	}
	s.stopping = true
	s.deps.Logger.Info().Str("subject", s.subject).Str("traceId", s.traceID).
		Msg("chat session: this member does not own the session; passivating")
	ctx.Poison(ctx.Self())
}

// releasePID is sent by a stopped grain to itself; it lands in the dead letters, unlogged.
type releasePID struct{}

func (releasePID) IgnoreDeadLetterLogging() {}

// releaseStopped makes a stopped activation collectable. protoactor's PID caches a pointer to its
// process, and the placement actor's set of children keeps removed PIDs in its backing array (it
// shortens the slice without clearing the slot), so every passivated activation stayed in memory —
// about 1.5 KB a session, up to the most sessions ever active at once. Sending to the dead PID makes
// protoactor drop that pointer (the message goes to the dead letters), leaving a bare PID behind.
func releaseStopped(ctx actor.Context) {
	ctx.Send(ctx.Self(), releasePID{})
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
	stream, err := s.chatStream()
	if err != nil {
		return err
	}
	last, err := retryStore(s, "last message", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return stream.GetLastMsgForSubject(ctx, s.subject)
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

// chatStream returns the CHAT stream's handle, creating the stream if it is missing. The handle is
// shared by the node's sessions (Deps.streams), so an activation does not ask for the stream's info.
func (s *chatSession) chatStream() (jetstream.Stream, error) {
	if st := s.deps.streams.get(); st != nil {
		return st, nil
	}
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
		return nil, fmt.Errorf("chat session: stream %s: %w", StreamChat, err)
	}
	s.deps.streams.set(st)
	return st, nil
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
	stream, err := s.chatStream()
	if err != nil {
		return err
	}
	clear(s.msgs)
	s.msgs, s.lastSeq, s.loaded = s.msgs[:0], 0, false
	last, err := retryStore(s, "last message", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return stream.GetLastMsgForSubject(ctx, s.subject)
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
			return stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.subject))
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("chat session: load %s at %d: %w", s.subject, seq, err)
		}
		if s.msgs, err = appendStored(s.msgs, raw); err != nil {
			return fmt.Errorf("chat session: decode %s seq %d: %w", s.subject, raw.Sequence, err)
		}
		seq = raw.Sequence + 1
	}
	s.lastSeq = last.Sequence
	s.loaded = true
	return nil
}

// holds reports whether this activation holds the message stored under id. The newest messages are
// looked at first: a re-sent Append is about the last exchange.
func (s *chatSession) holds(id string) bool {
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.msgs[i].id == id {
			return true
		}
	}
	return false
}

// append stores the request's messages in order, conditional on the last subject sequence this
// activation saw. On "wrong last sequence" another activation wrote in between: reload (which brings
// its messages in) and continue with the messages not yet stored, so nothing is overwritten and this
// request's messages land after the other's writes.
//
// On a replicated stream, several messages (an exchange: the user's message and the reply) are one
// atomic batch: one raft commit and one acknowledgement instead of one each, and never half an
// exchange. The first message carries the expected subject sequence; the batch commits only if it
// still holds. Where a batch cannot be used (atomic publish off, the stream's limit of open batches
// reached, a message of the batch already stored by an earlier try), the messages are published one
// by one as before.
//
// A stream with one replica does not take atomic batches: there nats-server stages each in a file
// store of its own, created and removed per batch (13 ms per exchange measured here, against 0.1 ms
// per single publish). There the messages of an Append are one stream message instead, a group
// (publishGroup): one publish and one acknowledgement on the caller's critical path. Only once
// every member of the topology reads groups (FeatureChatGroups): while a member of an older version
// is in it, messages go one by one, which it reads. A group is
// written only while none of the Append's messages is held yet, so that with an earlier try that
// stored some of them one by one each is still stored once; the rest then go one by one. (Left
// open: such an earlier try's messages removed again by retention before the re-send, which then
// finds none held, is a group JetStream does not take for a duplicate. One-by-one tries only come
// from members that predate groups, and retention drops a message only after newer ones.)
//
// Message i is stored under the message ID appendMsgID(request ID, i) (a group under groupMsgID,
// its messages holding their appendMsgID in memory) and skipped when this activation already holds
// that ID, so an Append re-sent after its first grain's member died stores each message once. If
// JetStream reports the ID as a duplicate that this activation has not loaded (the first grain's
// write landed after this one loaded), reload brings it in.
func (s *chatSession) append(req *pb.AppendRequest) error {
	if !s.loaded && req.GetNewSession() && s.subject != "" {
		// A session ID the caller just created has no messages: skip the load. The write below is
		// conditional on an empty subject, so if there were messages after all, it is refused and
		// the session loads and retries.
		s.loaded = true
	}
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		// Still give every message an ID, so that re-sending a publish whose ack was lost is safe.
		requestID = uuid.NewString()
	}
	now := s.deps.Now().UnixMilli()
	all := req.GetMessages()
	for _, m := range all {
		if m.GetTimestampMs() == 0 {
			m.TimestampMs = now
		}
	}
	several := len(all) > 1 && len(all) <= maxAppendBatch
	batch := several && (s.deps.Replicas > 1 || s.deps.forceBatch)
	group := several && !batch && s.deps.Placement.EveryMemberHosts(FeatureChatGroups)
	// done marks messages known to be stored once though this activation does not hold them
	// (stored, then removed again by retention or a clear); dupSeen, those JetStream already
	// reported as duplicates once.
	done := make([]bool, len(all))
	dupSeen := make([]bool, len(all))
	groupDupSeen := false
	conflicts := 0
	for {
		// The messages of this request not stored yet, by index (their IDs are appendMsgID).
		var pending []int
		for i := range all {
			if !done[i] && !s.holds(appendMsgID(requestID, i)) {
				pending = append(pending, i)
			}
		}
		if len(pending) == 0 {
			break
		}
		if pending[0] == 0 {
			// Nothing of this request is stored yet: its condition is checked again after every
			// reload, since another activation's writes count too.
			if err := s.checkLastResponse(req); err != nil { // responses.go
				return err
			}
		}
		var err error
		switch {
		case batch && len(pending) > 1:
			if err = s.publishBatch(requestID, all, pending); errors.Is(err, errNoBatch) {
				batch = false
				continue
			}
		case group && len(pending) == len(all):
			err = s.publishGroup(requestID, all)
			switch {
			case errors.Is(err, errNoBatch):
				group = false
				continue
			case errors.Is(err, errStoredBefore) || (errors.Is(err, errReload) && groupDupSeen):
				// As for one message below: the group was stored once, and is gone again.
				for i := range done {
					done[i] = true
				}
				continue
			case errors.Is(err, errReload):
				groupDupSeen = true
			}
		default:
			i := pending[0]
			err = s.publishOne(requestID, all, i)
			switch {
			case errors.Is(err, errStoredBefore):
				done[i] = true
				continue
			case errors.Is(err, errReload) && dupSeen[i]:
				// Still not loaded after a reload: gone again, and it was stored once, which is
				// what counts.
				done[i] = true
				continue
			case errors.Is(err, errReload):
				dupSeen[i] = true
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, errReload) || store.IsWrongLastSequence(err):
			conflicts++
			if conflicts > maxConflicts {
				return fmt.Errorf("chat session %s: gave up after %d concurrent-write conflicts: %w", s.subject, maxConflicts, err)
			}
			if store.IsWrongLastSequence(err) {
				s.deps.Logger.Warn().Str("traceId", s.traceID).Str("subject", s.subject).Uint64("expectedSeq", s.lastSeq).
					Msg("chat session: write refused (another activation wrote); reloading")
				conflictBackoff(conflicts)
			}
			if err := s.reload(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("chat session %s: append: %w", s.subject, err)
		}
	}
	return nil
}

// maxAppendBatch is the most messages one Append writes as one atomic batch or one group (JetStream
// allows 1,000 per batch; an exchange is two). Larger Appends are written one message at a time.
const maxAppendBatch = 100

var (
	// errNoBatch: write this Append's messages one by one (the batch was refused for a reason a
	// single publish does not have, or some of its messages were stored before; the group would
	// exceed the largest message the server takes).
	errNoBatch = errors.New("chat session: atomic batch not possible")
	// errReload: the store holds a message this activation has not loaded; reload and retry.
	errReload = errors.New("chat session: reload needed")
	// errStoredBefore: the message was stored before and is gone again (retention, clear).
	errStoredBefore = errors.New("chat session: stored before")
)

// stamp keeps timestamps non-decreasing in stream order. History is oldest first by stream order,
// and ?before= pages by timestamp, so concurrent exchanges (stamped when they started, stored when
// they finished) would otherwise make paging skip or repeat messages.
func (s *chatSession) stamp(m *pb.ChatMessage, prev int64) {
	m.TimestampMs = max(m.TimestampMs, prev)
}

func (s *chatSession) lastTimestamp() int64 {
	if n := len(s.msgs); n > 0 {
		return s.msgs[n-1].msg.GetTimestampMs()
	}
	return 0
}

// publishOne stores message i of the request, conditional on the last subject sequence this
// activation saw.
func (s *chatSession) publishOne(requestID string, all []*pb.ChatMessage, i int) error {
	m, msgID := all[i], appendMsgID(requestID, i)
	s.stamp(m, s.lastTimestamp())
	data, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("chat session: encode: %w", err)
	}
	msg := nats.NewMsg(s.subject)
	msg.Data = data
	seq, err := s.publishExpected(msg, msgID)
	if err != nil {
		return err
	}
	s.msgs = append(s.msgs, storedMessage{seq: seq, id: msgID, msg: m})
	s.lastSeq = seq
	return nil
}

// publishBatch stores the pending messages of the request as one atomic batch: all or none, ending
// at the commit's sequence. Each message keeps its message ID, which JetStream deduplicates.
func (s *chatSession) publishBatch(requestID string, all []*pb.ChatMessage, pending []int) error {
	prev := s.lastTimestamp()
	data := make([][]byte, len(pending))
	for k, i := range pending {
		s.stamp(all[i], prev)
		prev = all[i].TimestampMs
		b, err := proto.Marshal(all[i])
		if err != nil {
			return fmt.Errorf("chat session: encode: %w", err)
		}
		data[k] = b
	}
	expected := strconv.FormatUint(s.lastSeq, 10)
	ack, err := retryStore(s, "publish batch", func(ctx context.Context) (*jetstream.PubAck, error) {
		// A fresh batch ID per try: a try whose first messages arrived but whose commit did not
		// leaves an incomplete batch the server discards.
		batchID := uuid.NewString()
		msgs := make([]*nats.Msg, len(pending))
		for k, i := range pending {
			m := nats.NewMsg(s.subject)
			m.Data = data[k]
			m.Header.Set(jetstream.MsgIDHeader, appendMsgID(requestID, i))
			m.Header.Set(hdrBatchID, batchID)
			m.Header.Set(hdrBatchSeq, strconv.Itoa(k+1))
			msgs[k] = m
		}
		msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, expected)
		last := msgs[len(msgs)-1]
		last.Header.Set(hdrBatchCommit, "1")
		// Every message but the last is a plain publish; the last commits and is answered for the
		// batch. One connection keeps them in order.
		nc := s.deps.JS.Conn()
		for _, m := range msgs[:len(msgs)-1] {
			if err := nc.PublishMsg(m); err != nil {
				return nil, err
			}
		}
		ack, err := s.deps.JS.PublishMsg(ctx, last, jetstream.WithExpectStream(StreamChat))
		if isBatchIncomplete(err) {
			// A message of the batch was lost on the way: unanswered, so retried.
			return nil, nats.ErrTimeout
		}
		return ack, err
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case errCodeAtomicDuplicate:
				// Some message of the batch was stored before (an earlier try, perhaps one at a
				// time): load what the store holds, then write what is missing one by one.
				if err := s.reload(); err != nil {
					return err
				}
				return errNoBatch
			case errCodeAtomicDisabled, errCodeAtomicTooManyInflight, errCodeAtomicTooLarge:
				return errNoBatch
			}
		}
		return err
	}
	first := ack.Sequence - uint64(len(pending)-1)
	for k, i := range pending {
		s.msgs = append(s.msgs, storedMessage{seq: first + uint64(k), id: appendMsgID(requestID, i), msg: all[i]})
	}
	s.lastSeq = ack.Sequence
	return nil
}

// groupHeaderRoom is what a group's publish may add to its payload at most (subject, headers), for
// the check against the server's largest message.
const groupHeaderRoom = 1024

// publishGroup stores all the request's messages as one stream message (a group: header hdrMessages,
// payload pb.ChatMessages, message ID groupMsgID), conditional on the last subject sequence this
// activation saw. In memory they stay one storedMessage each, sharing the group's sequence. It
// returns errNoBatch, storing nothing, when the group would exceed the largest message the server
// takes while its messages one by one might not.
func (s *chatSession) publishGroup(requestID string, all []*pb.ChatMessage) error {
	prev := s.lastTimestamp()
	for _, m := range all {
		s.stamp(m, prev)
		prev = m.TimestampMs
	}
	data, err := proto.Marshal(&pb.ChatMessages{TimestampMs: prev, Messages: all})
	if err != nil {
		return fmt.Errorf("chat session: encode: %w", err)
	}
	nc := s.deps.JS.Conn()
	if int64(len(data))+groupHeaderRoom > nc.MaxPayload() {
		return errNoBatch
	}
	msg := nats.NewMsg(s.subject)
	msg.Data = data
	msg.Header.Set(hdrMessages, strconv.Itoa(len(all)))
	seq, err := s.publishExpected(msg, groupMsgID(requestID, len(all)))
	if err != nil {
		return err
	}
	for i, m := range all {
		s.msgs = append(s.msgs, storedMessage{seq: seq, id: appendMsgID(requestID, i), msg: m})
	}
	s.lastSeq = seq
	return nil
}

// publishExpected publishes msg under msgID, conditional on the last subject sequence this
// activation saw, and returns its stream sequence. JetStream reporting msgID as a duplicate means
// an earlier try of this Append stored it (possibly on another member): errStoredBefore when this
// activation loaded it and it was removed again (retention, clear: do not store it twice), else
// errReload.
func (s *chatSession) publishExpected(msg *nats.Msg, msgID string) (uint64, error) {
	expected := s.lastSeq
	ack, err := retryStore(s, "publish", func(ctx context.Context) (*jetstream.PubAck, error) {
		return s.deps.JS.PublishMsg(ctx, msg,
			jetstream.WithMsgID(msgID),
			jetstream.WithExpectStream(StreamChat),
			jetstream.WithExpectLastSequencePerSubject(expected))
	})
	if err != nil {
		return 0, err
	}
	if ack.Duplicate {
		if s.lastSeq >= ack.Sequence {
			return 0, errStoredBefore
		}
		return 0, errReload
	}
	return ack.Sequence, nil
}

// Atomic batch publish (JetStream ADR-50): headers and the error codes the chat session handles.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"

	errCodeAtomicDuplicate       jetstream.ErrorCode = 10201 // a message ID of the batch is stored already
	errCodeAtomicDisabled        jetstream.ErrorCode = 10174 // the stream does not allow atomic publish
	errCodeAtomicIncomplete      jetstream.ErrorCode = 10176 // a message of the batch did not arrive
	errCodeAtomicTooLarge        jetstream.ErrorCode = 10199 // more messages than the server allows
	errCodeAtomicTooManyInflight jetstream.ErrorCode = 10210 // the stream's limit of open batches
)

func isBatchIncomplete(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeAtomicIncomplete
}

// conflictBackoff pauses a random 0–10·n ms before the nth retry after a refused write. Two
// activations of one session that both take a stream of appends (after a crash, until the stale one
// passivates) otherwise refuse each other in lockstep: the crash soak saw requests give up after
// five conflicts in a row within 100 ms. The random pause lets one of them win the next round.
func conflictBackoff(n int) {
	time.Sleep(time.Duration(rand.Int64N(int64(10*n)+1)) * time.Millisecond)
}

// history returns the newest limit messages that retention keeps and that are older than before,
// oldest first.
func (s *chatSession) history(req *pb.HistoryRequest) ([]*pb.ChatMessage, error) {
	if s.loaded && !s.deps.SingleMember {
		if err := s.refresh(); err != nil {
			return nil, err
		}
	} else if err := s.ensureLoaded(); err != nil {
		return nil, err
	}
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
	cutoff := s.ageCutoff(r)
	capacity := int(r.GetMaxMessages())
	n := 0
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.msgs[i].msg.GetTimestampMs() < cutoff || s.removing.drops(s.msgs[i].seq) {
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

// ageCutoff is the timestamp (epoch ms) below which r drops a message; 0 without an age limit.
func (s *chatSession) ageCutoff(r *pb.Retention) int64 {
	if age := r.GetMaxAgeMs(); age > 0 {
		return s.deps.Now().UnixMilli() - age
	}
	return 0
}

// applyRetention really removes what the retention drops from the stream. It runs after the
// request was answered (histories already leave those messages out: retained), and the removal
// itself runs beside the grain (removal.run, in a goroutine of Deps.AfterWork): on a node alone the
// grain runs in its requester's goroutine, so a store round trip here would delay the answer by one
// JetStream API request per dropped exchange (about 80 µs of a /chat one at a time), and on a
// cluster it would hold up the session's next request. One removal runs at a time per activation;
// what the requests answered meanwhile drop is removed when it reported back. Only when every
// stream message of the session goes (everything expired) does the removal run in line, before the
// grain's next message, since the session's next write is conditional on the subject's last
// sequence, which that removal changes.
//
// What the cap drops is removed a batch at a time (retentionBatch): at a session's cap every
// exchange drops one, and one JetStream API request per exchange was a tenth of a /chat's CPU. A
// batch goes in one subject purge when the purge's walk is the cheaper (purgeCheaper: it visits
// every stream message in its range, every other session's too, so with many sessions writing at
// once deletes by sequence win). The in-memory state follows only once the store did
// (retentionDone), so a failed removal is retried next time.
//
// A stream message holding a group (publishGroup) is removed once retention drops all its messages.
// While one of them is kept (a cap of 21 messages keeps only the reply of the oldest exchange), the
// stream message stays and only the dropped ones leave memory: a reload brings them back, and as
// retention is recomputed on every request, retained drops them again.
func (s *chatSession) applyRetention(ctx actor.Context, r *pb.Retention) {
	if r == nil || len(s.msgs) == 0 || s.removing != nil {
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
	upTo := s.lastSeq + 1
	if first < len(s.msgs) {
		// Exclusive: a group whose first messages are dropped and a later one kept is msgs[first]'s
		// stream message, which stays.
		upTo = s.msgs[first].seq
	}
	dropped := 0 // stream messages of the dropped prefix, all of whose chat messages go
	for i := 0; i < first && s.msgs[i].seq < upTo; i++ {
		if i == 0 || s.msgs[i].seq != s.msgs[i-1].seq {
			dropped++
		}
	}
	// What the cap drops waits until there is a batch of it (histories leave it out meanwhile),
	// so that one purge can remove it; what the age limit drops goes at once.
	if stragglers == 0 && dropped < retentionBatch(r) && s.msgs[0].msg.GetTimestampMs() >= s.ageCutoff(r) {
		return
	}
	stream, err := s.chatStream()
	if err != nil {
		s.deps.Logger.Error().Err(err).Str("traceId", s.traceID).Str("subject", s.subject).Msg("chat session: retention skipped")
		return
	}
	rm := &removal{subject: s.subject, traceID: s.traceID, retention: r}
	if dropped > 0 && purgeCheaper(dropped, upTo-s.msgs[0].seq) {
		rm.purgeBelow = upTo
	}
	out := s.msgs[:0]
	for i := 0; i < len(s.msgs); {
		// s.msgs[i:j] are one stream message's: one chat message, or a group's.
		seq, j, anyKept := s.msgs[i].seq, i, false
		for ; j < len(s.msgs) && s.msgs[j].seq == seq; j++ {
			anyKept = anyKept || kept[j]
		}
		if !anyKept {
			// Removed from the store first; it leaves memory once that is done.
			if seq >= rm.purgeBelow {
				rm.deletes = append(rm.deletes, seq)
			}
			out = append(out, s.msgs[i:j]...)
			i = j
			continue
		}
		for ; i < j; i++ {
			if kept[i] {
				out = append(out, s.msgs[i])
			}
		}
	}
	clear(s.msgs[len(out):])
	s.msgs = out
	if rm.purgeBelow == 0 && len(rm.deletes) == 0 {
		return // only dropped messages of kept groups, gone from memory already
	}
	s.removing = rm
	if kept[len(kept)-1] {
		self, root, log := ctx.Self(), ctx.ActorSystem().Root, s.deps.Logger
		s.deps.AfterWork.Go(func() {
			// Until the grain took the report: a removal it starts then is tracked before this ends.
			_, _ = root.RequestFuture(self, rm.run(stream, log), storeTimeout).Result()
		})
		return
	}
	s.removed(rm.run(stream, s.deps.Logger))
}

// removal is what one retention pass removes from the store: the subject's stream messages below
// purgeBelow (0: none) and those listed in deletes. Once they are gone, retention is applied again
// (a later request's may differ; that request applies its own after).
type removal struct {
	subject, traceID string
	retention        *pb.Retention
	purgeBelow       uint64
	deletes          []uint64
}

// drops reports whether seq is being removed, so retained keeps it out of histories meanwhile.
func (rm *removal) drops(seq uint64) bool {
	return rm != nil && (seq < rm.purgeBelow || slices.Contains(rm.deletes, seq))
}

// run removes them and reports what is gone. It touches no grain state: it may run in a goroutine
// of its own.
func (rm *removal) run(stream jetstream.Stream, log zerolog.Logger) *retentionDone {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	done := &retentionDone{removal: rm}
	if rm.purgeBelow > 0 {
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(rm.subject), jetstream.WithPurgeSequence(rm.purgeBelow)); err != nil {
			log.Error().Err(err).Str("traceId", rm.traceID).Str("subject", rm.subject).Msg("chat session: retention purge failed")
			return done
		}
		done.purgedBelow = rm.purgeBelow
	}
	for _, seq := range rm.deletes {
		if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			log.Error().Err(err).Str("traceId", rm.traceID).Str("subject", rm.subject).Uint64("seq", seq).Msg("chat session: retention delete failed")
			continue
		}
		done.deleted = append(done.deleted, seq)
	}
	return done
}

// retentionDone is what a removal that ran beside its grain reports to it: what is gone from the
// store. It lands in the dead letters, unlogged, when the activation stopped meanwhile.
type retentionDone struct {
	removal     *removal
	purgedBelow uint64
	deleted     []uint64
}

func (*retentionDone) IgnoreDeadLetterLogging() {}

// complete: everything the removal was to remove is gone.
func (d *retentionDone) complete() bool {
	return d.purgedBelow == d.removal.purgeBelow && len(d.deleted) == len(d.removal.deletes)
}

// retentionTaken answers retentionDone.
type retentionTaken struct{}

// removed ends a removal: what is gone from the store leaves memory (by sequence, so it holds after
// a reload meanwhile too); what failed stays, for the next request's retention to try again.
func (s *chatSession) removed(done *retentionDone) {
	if s.removing != done.removal {
		return // a removal of an earlier activation state (cleared meanwhile)
	}
	s.removing = nil
	s.msgs = slices.DeleteFunc(s.msgs, func(m storedMessage) bool {
		return m.seq < done.purgedBelow || slices.Contains(done.deleted, m.seq)
	})
	if len(s.msgs) == 0 {
		s.lastSeq = 0
	} else {
		s.lastSeq = s.msgs[len(s.msgs)-1].seq
	}
}

// retentionBatch is how many stream messages the cap drops before they are removed from the store:
// a quarter of the cap (in chat messages, so about half of it for exchanges stored as one group
// each), at most maxRetentionBatch. A session holds at most that many dropped messages beyond its
// cap, in the store and in memory; histories never show them.
func retentionBatch(r *pb.Retention) int {
	return min(maxRetentionBatch, max(1, int(r.GetMaxMessages())/4))
}

const maxRetentionBatch = 16

// purgeCheaper decides how retention removes a dropped prefix of n stream messages spanning span
// stream sequences (the session's and every other session's messages written between them): one
// subject purge, or n deletes by sequence. Measured with the embedded server one request at a
// time, a delete request costs 65 µs of CPU and a purge 50 ns per sequence it walks; under /chat
// load (32 connections) a delete costs both sides about 30 µs and a purge walks its range about
// twice (the removal, then the server's recount for its consumers), so the two meet near 500
// sequences per removed message. A purge is taken up to purgeScanPerMessage of them, or once the
// deletes would be many.
func purgeCheaper(n int, span uint64) bool {
	return n > maxRetentionDeletes || (n > 1 && span <= purgeScanPerMessage*uint64(n))
}

const (
	// maxRetentionDeletes is the most stream messages retention deletes one by one.
	maxRetentionDeletes = 32
	purgeScanPerMessage = 512
)

// clear purges the session's subject: the stored messages are erased, not only the in-memory copy.
func (s *chatSession) clear() error {
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	stream, err := s.chatStream()
	if err != nil {
		return err
	}
	ctx, cancel := s.opContext()
	defer cancel()
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(s.subject)); err != nil {
		return fmt.Errorf("chat session %s: clear: %w", s.subject, err)
	}
	clear(s.msgs)
	s.msgs, s.lastSeq, s.removing = s.msgs[:0], 0, nil
	return nil
}
