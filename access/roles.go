package access

// Role is what a caller must be to call a route. The agent's route table
// (agent/routes.go) gives each route one; Admit decides by it before the
// route's handler runs.
type Role int

// Roles, from the most open to the narrowest. The zero role is none: a route
// without one is refused to everyone (and fails the agent's
// TestEveryRouteHasARole).
const (
	// RoleAnyone: no certificate needed (health, and joining, which its
	// token authenticates).
	RoleAnyone Role = iota + 1
	// RoleAuthenticated: any certificate of the cluster, a user's, an
	// admin's or a node's. What such a route lists is filtered by Visible.
	RoleAuthenticated
	// RoleUser: a user's certificate (admins included), not a node's.
	RoleUser
	// RoleAdmin: an admin user.
	RoleAdmin
	// RoleJobOwner: the user who owns the job named by {gpid}, or an admin.
	RoleJobOwner
	// RoleJobMover: RoleJobOwner, or the balancer's elected leader (a node
	// acting for itself) for a job that is not pinned, or the drain
	// controller's leader for a job its drain decided to move.
	RoleJobMover
	// RoleCheckpointOwner: the user whose job the checkpoint named by
	// {name} saved, or an admin.
	RoleCheckpointOwner
	// RoleNode: a node certificate (another agent), acting for itself.
	RoleNode
	// RoleMigrationOwner: the node the record of {gpid} names as its owner,
	// i.e. the source of its migration (a prepare starts one).
	RoleMigrationOwner
	// RoleMigrationSource: the node that prepared the migration of {gpid}
	// here (for a resume that comes after this node resumed the job by
	// itself: the node the job arrived from); with none here, the node the
	// record names as owner.
	RoleMigrationSource
	// RoleServiceOwner: the user who owns the service named by {name}, or an
	// admin.
	RoleServiceOwner
	// RoleAdminOrNode: an admin user, or a node (another agent, or a
	// Prometheus given a node's certificate): the agent's metrics.
	RoleAdminOrNode
)

func (r Role) String() string {
	switch r {
	case RoleAnyone:
		return "anyone"
	case RoleAuthenticated:
		return "any certificate (user, admin, node)"
	case RoleUser:
		return "a user (or admin)"
	case RoleAdmin:
		return "an admin"
	case RoleJobOwner:
		return "the job's owner, or an admin"
	case RoleJobMover:
		return "the job's owner, an admin, the balancer's leader node (job not pinned), or the drain controller's leader node (job of a drained node)"
	case RoleCheckpointOwner:
		return "the checkpoint's owner, or an admin"
	case RoleNode:
		return "a node"
	case RoleMigrationOwner:
		return "the node the job's record names as owner"
	case RoleMigrationSource:
		return "the node that prepared the migration here"
	case RoleServiceOwner:
		return "the service's owner, or an admin"
	case RoleAdminOrNode:
		return "an admin or a node"
	}
	return "nobody"
}
