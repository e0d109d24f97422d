package actors

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/crispy-enigma/crispy/actors/pb"
	"github.com/crispy-enigma/crispy/observe"
)

// ErrResponseConflict is returned by AppendAfterResponse when the session's newest response is not
// the one the turn continues from: another turn was stored after it.
var ErrResponseConflict = errors.New("another turn was stored after that response")

// conflictPrefix starts the grain's error for a refused conditional append; the client maps it to
// ErrResponseConflict (grain errors cross members as strings).
const conflictPrefix = "conflict: "

// lastResponseID is the response ID of the newest message that has one, "" when none has.
func lastResponseID(msgs []storedMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if id := msgs[i].msg.GetResponseId(); id != "" {
			return id
		}
	}
	return ""
}

// checkLastResponse is the condition of an append with if_last_response (see AppendRequest).
func (s *chatSession) checkLastResponse(req *pb.AppendRequest) error {
	if !req.GetIfLastResponse() {
		return nil
	}
	if got, want := lastResponseID(s.msgs), req.GetExpectLastResponseId(); got != want {
		return errors.New(conflictPrefix + "the session's newest response is not " + want)
	}
	return nil
}

// AppendAfterResponse is Append on condition: the session's newest message with a response ID must
// have previousResponseID ("" = the session holds no response yet), else nothing is stored and the
// error is ErrResponseConflict. The check and the write are one grain request, so two turns that
// continue from the same response cannot both extend the session.
func (c *Client) AppendAfterResponse(ctx context.Context, tenantID, sessionID string, msgs []Message, r Retention, previousResponseID string) error {
	id, err := sessionIdentity(tenantID, sessionID)
	if err != nil {
		return err
	}
	req := &pb.AppendRequest{Messages: toPBMessages(msgs), Retention: toPBRetention(r), RequestId: uuid.NewString(),
		TraceId: observe.TraceID(ctx), IfLastResponse: true, ExpectLastResponseId: previousResponseID}
	res, err := requestIdempotent[*pb.AppendResponse](ctx, c, id, KindChatSession, req)
	if err != nil {
		return err
	}
	if e := res.GetError(); strings.HasPrefix(e, conflictPrefix) {
		return ErrResponseConflict
	}
	return grainErr(res.GetError())
}

func toPBMessages(msgs []Message) []*pb.ChatMessage {
	out := make([]*pb.ChatMessage, len(msgs))
	for i, m := range msgs {
		out[i] = &pb.ChatMessage{Role: m.Role, Content: m.Content, TokenCount: int32(m.TokenCount),
			ResponseId: m.ResponseID, Model: m.Model, TokensIn: int32(m.TokensIn),
			ToolCallId: m.ToolCallID, ToolCallsJson: m.ToolCallsJSON}
		if !m.Timestamp.IsZero() {
			out[i].TimestampMs = m.Timestamp.UnixMilli()
		}
	}
	return out
}

func fromPBMessage(m *pb.ChatMessage) Message {
	return Message{
		Role:          m.GetRole(),
		Content:       m.GetContent(),
		Timestamp:     time.UnixMilli(m.GetTimestampMs()),
		TokenCount:    int(m.GetTokenCount()),
		ResponseID:    m.GetResponseId(),
		Model:         m.GetModel(),
		TokensIn:      int(m.GetTokensIn()),
		ToolCallID:    m.GetToolCallId(),
		ToolCallsJSON: m.GetToolCallsJson(),
	}
}
