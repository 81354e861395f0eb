package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/topic"
)

// Connection is one WebSocket connection's record.
type Connection struct {
	ID        string
	Principal auth.Principal
	// Scope is the topic a scoped (?topic=) connection is bound to.
	Scope    string
	Envelope bool
	// Pending connections wait for an auth message until AuthDeadline.
	Pending       bool
	AuthDeadline  time.Time
	ConnectedAt   time.Time
	ExpiresAt     time.Time
	Subscriptions int
	Limits        config.Limits
	SourceIP      string
}

// PushOnly reports whether the connection ignores client commands other
// than ping and request_current_state.
func (c Connection) PushOnly() bool {
	return c.Scope != "" || c.Principal.Mode == auth.ModePush
}

// Connection attribute names.
const (
	attrPrincipal = "p"
	attrScope     = "scope"
	attrEnvelope  = "env"
	attrPending   = "pend"
	attrAt        = "at"
	attrSubs      = "ns"
	attrRateWin   = "rlw"
	attrRateCount = "rlc"
	attrRateMax   = "rlm"
	attrMaxBytes  = "mb"
	attrMaxSubs   = "ms"
	attrMaxConns  = "mc"
	attrIP        = "ip"
	attrLast      = "la"
)

func connPK(id string) string { return prefixConn + id }

func (c Connection) item() (map[string]types.AttributeValue, error) {
	p, err := json.Marshal(c.Principal)
	if err != nil {
		return nil, fmt.Errorf("store: encode principal: %w", err)
	}
	it := key(connPK(c.ID), skMeta)
	it[attrPrincipal] = sv(string(p))
	it[attrEnvelope] = bv(c.Envelope)
	it[attrAt] = nv(c.ConnectedAt.UnixMilli())
	it[TTLAttribute] = nv(c.ExpiresAt.Unix())
	it[attrSubs] = nv(int64(c.Subscriptions))
	it[attrRateWin] = nv(0)
	it[attrRateCount] = nv(0)
	it[attrRateMax] = nv(int64(c.Limits.MessagesPerSecond))
	it[attrMaxBytes] = nv(int64(c.Limits.MaxMessageBytes))
	it[attrMaxSubs] = nv(int64(c.Limits.MaxSubscriptions))
	it[attrMaxConns] = nv(int64(c.Limits.MaxConnectionsPerPrincipal))
	if c.Scope != "" {
		it[attrScope] = sv(c.Scope)
	}
	if c.Pending {
		it[attrPending] = nv(c.AuthDeadline.UnixMilli())
	}
	if c.SourceIP != "" {
		it[attrIP] = sv(c.SourceIP)
	}
	return it, nil
}

func connectionFrom(item map[string]types.AttributeValue) (Connection, error) {
	c := Connection{
		ID:            getS(item, PartitionKey)[len(prefixConn):],
		Scope:         getS(item, attrScope),
		Envelope:      getBool(item, attrEnvelope),
		ConnectedAt:   time.UnixMilli(getN(item, attrAt)),
		ExpiresAt:     time.Unix(getN(item, TTLAttribute), 0),
		Subscriptions: int(getN(item, attrSubs)),
		SourceIP:      getS(item, attrIP),
		Limits: config.Limits{
			MessagesPerSecond:          int(getN(item, attrRateMax)),
			MaxMessageBytes:            int(getN(item, attrMaxBytes)),
			MaxSubscriptions:           int(getN(item, attrMaxSubs)),
			MaxConnectionsPerPrincipal: int(getN(item, attrMaxConns)),
		},
	}
	if _, ok := item[attrPending]; ok {
		c.Pending = true
		c.AuthDeadline = time.UnixMilli(getN(item, attrPending))
	}
	if err := json.Unmarshal([]byte(getS(item, attrPrincipal)), &c.Principal); err != nil {
		return Connection{}, fmt.Errorf("store: decode principal of %s: %w", c.ID, err)
	}
	return c, nil
}

// PutConnection stores a new connection and its initial subscriptions.
// Subscriptions counts them; the record is written first so a failure
// part-way leaves only items that expire with the connection's TTL.
func (s *Store) PutConnection(ctx context.Context, c Connection, subs []NewSubscription) error {
	c.Subscriptions = len(subs)
	item, err := c.item()
	if err != nil {
		return err
	}
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.table, Item: item,
		ConditionExpression:    aws.String("attribute_not_exists(pk)"),
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		return fmt.Errorf("store: put connection %s: %w", c.ID, err)
	}
	meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
	return s.putSubscriptions(ctx, c, subs)
}

func (s *Store) putSubscriptions(ctx context.Context, c Connection, subs []NewSubscription) error {
	var reqs []types.WriteRequest
	for _, sub := range subs {
		for _, it := range s.subscriptionItems(c, sub) {
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
		}
	}
	return s.batchWrite(ctx, reqs)
}

// GetConnection reads a connection record.
func (s *Store) GetConnection(ctx context.Context, id string) (Connection, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(connPK(id), skMeta), ConsistentRead: aws.Bool(true),
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		return Connection{}, fmt.Errorf("store: get connection %s: %w", id, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil || !alive(out.Item, s.now()) {
		return Connection{}, ErrNotFound
	}
	return connectionFrom(out.Item)
}

// TouchConnection counts one client message against the connection's rate
// limit (a fixed one-second window kept in the record, so the limit holds
// across every Lambda instance) and returns the record. It returns
// ErrRateLimited, with the record, when the window is full, and ErrNotFound
// for an unknown or expired connection. One write in the common case. at
// is when the message arrived: its second is the window it counts in.
func (s *Store) TouchConnection(ctx context.Context, id string, at time.Time) (Connection, error) {
	now := at
	win := now.Unix()
	for attempt := 0; attempt < 4; attempt++ {
		out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           s.table,
			Key:                                 key(connPK(id), skMeta),
			UpdateExpression:                    aws.String("SET rlc = rlc + :one, la = :now"),
			ConditionExpression:                 aws.String("attribute_exists(pk) AND rlw = :win AND rlc < rlm AND #ttl > :nows"),
			ExpressionAttributeNames:            map[string]string{"#ttl": TTLAttribute},
			ExpressionAttributeValues:           map[string]types.AttributeValue{":one": nv(1), ":now": nv(now.UnixMilli()), ":win": nv(win), ":nows": nv(now.Unix())},
			ReturnValues:                        types.ReturnValueAllNew,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			ReturnConsumedCapacity:              total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			return connectionFrom(out.Attributes)
		}
		var ccf *types.ConditionalCheckFailedException
		if !asCCF(err, &ccf) {
			return Connection{}, fmt.Errorf("store: touch %s: %w", id, err)
		}
		meter(ctx, "UpdateItem")
		old := ccf.Item
		if old == nil || !alive(old, now) {
			return Connection{}, ErrNotFound
		}
		switch stored := getN(old, attrRateWin); {
		case stored == win:
			c, err := connectionFrom(old)
			if err != nil {
				return Connection{}, err
			}
			return c, ErrRateLimited
		case stored > win:
			// A frame that arrived later already opened the next window
			// (frames of one connection run at once, in any order): count
			// this one there.
			win = stored
			continue
		}
		// A new window: reset the counter, unless another instance just did.
		out, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 s.table,
			Key:                       key(connPK(id), skMeta),
			UpdateExpression:          aws.String("SET rlw = :win, rlc = :one, la = :now"),
			ConditionExpression:       aws.String("attribute_exists(pk) AND rlw < :win"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": nv(1), ":now": nv(now.UnixMilli()), ":win": nv(win)},
			ReturnValues:              types.ReturnValueAllNew,
			ReturnConsumedCapacity:    total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			return connectionFrom(out.Attributes)
		}
		if !isConditionFailed(err) {
			return Connection{}, fmt.Errorf("store: touch %s: %w", id, err)
		}
	}
	return Connection{}, fmt.Errorf("store: touch %s: contention did not settle", id)
}

func asCCF(err error, target **types.ConditionalCheckFailedException) bool {
	return errors.As(err, target)
}

// Authenticate turns a pending connection into an authenticated one and
// adds its initial subscriptions. ErrExpired when the deadline has passed,
// ErrNotFound when the connection is gone or was not pending.
func (s *Store) Authenticate(ctx context.Context, c Connection, subs []NewSubscription) error {
	now := s.now()
	p, err := json.Marshal(c.Principal)
	if err != nil {
		return fmt.Errorf("store: encode principal: %w", err)
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           s.table,
		Key:                 key(connPK(c.ID), skMeta),
		UpdateExpression:    aws.String("SET p = :p, ns = :ns, rlm = :rlm, mb = :mb, ms = :ms, mc = :mc REMOVE pend"),
		ConditionExpression: aws.String("attribute_exists(pend) AND pend >= :now"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":p": sv(string(p)), ":ns": nv(int64(len(subs))), ":now": nv(now.UnixMilli()),
			":rlm": nv(int64(c.Limits.MessagesPerSecond)), ":mb": nv(int64(c.Limits.MaxMessageBytes)),
			":ms": nv(int64(c.Limits.MaxSubscriptions)), ":mc": nv(int64(c.Limits.MaxConnectionsPerPrincipal)),
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ReturnConsumedCapacity:              total,
	})
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if asCCF(err, &ccf) {
			if ccf.Item != nil && getN(ccf.Item, attrPending) != 0 {
				return ErrExpired
			}
			return ErrNotFound
		}
		return fmt.Errorf("store: authenticate %s: %w", c.ID, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return s.putSubscriptions(ctx, c, subs)
}

// DeleteConnection removes a connection's record and every subscription
// (both entries). It is idempotent and returns how many items it removed.
func (s *Store) DeleteConnection(ctx context.Context, id string) (int, error) {
	var reqs []types.WriteRequest
	del := func(pk, sk string) {
		reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(pk, sk)}})
	}
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(connPK(id))},
		ProjectionExpression:      aws.String("pk, sk"),
		ConsistentRead:            aws.Bool(true),
	}, func(item map[string]types.AttributeValue) {
		sk := getS(item, SortKey)
		if len(sk) > len(skSubPrefix) && sk[:len(skSubPrefix)] == skSubPrefix {
			del(prefixPattern+sk[len(skSubPrefix):], id)
		}
		del(connPK(id), sk)
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete connection %s: %w", id, err)
	}
	if len(reqs) == 0 {
		return 0, nil
	}
	return len(reqs), s.batchWrite(ctx, reqs)
}

// CountConnections counts the live connections of a principal, found
// through their direct-topic subscriptions.
func (s *Store) CountConnections(ctx context.Context, direct topic.Pattern) (int, error) {
	n := 0
	in := &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		FilterExpression:          aws.String("#ttl > :now"),
		ExpressionAttributeNames:  map[string]string{"#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(prefixPattern + direct.String()), ":now": nv(s.now().Unix())},
		Select:                    types.SelectCount,
		ConsistentRead:            aws.Bool(true), // a connection made a moment ago counts
		ReturnConsumedCapacity:    total,
	}
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return 0, fmt.Errorf("store: count connections: %w", err)
		}
		meter(ctx, "Query", ccOne(out.ConsumedCapacity)...)
		n += int(out.Count)
		if out.LastEvaluatedKey == nil {
			return n, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// queryAll runs a query to its end, calling fn for each item.
func (s *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput, fn func(map[string]types.AttributeValue)) error {
	in.ReturnConsumedCapacity = total
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return err
		}
		meter(ctx, "Query", ccOne(out.ConsumedCapacity)...)
		for _, it := range out.Items {
			fn(it)
		}
		if out.LastEvaluatedKey == nil {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}
