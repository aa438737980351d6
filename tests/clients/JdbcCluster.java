// pgjdbc against a Hindsight cluster: a multi-host URL with targetServerType=primary
// reaches the leader (retrying while an election runs) and writes there;
// targetServerType=secondary reaches a standby, whose writes fail with SQLState 25006.
// Usage: java -cp postgresql.jar JdbcCluster.java h1:p1,h2:p2,h3:p3 ID
import java.sql.*;

public class JdbcCluster {
    static Connection connect(String hosts, String type) throws Exception {
        String url = "jdbc:postgresql://" + hosts + "/hindsight?user=jdbc&targetServerType=" + type
            + "&connectTimeout=2&hostRecheckSeconds=0";
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            try {
                return DriverManager.getConnection(url);
            } catch (SQLException e) {
                if (System.currentTimeMillis() > deadline) throw e;
                Thread.sleep(200);
            }
        }
    }

    static boolean inRecovery(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT pg_is_in_recovery()")) {
            rs.next();
            return rs.getBoolean(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[0];
        long key = Long.parseLong(args[1]);
        try (Connection primary = connect(hosts, "primary")) {
            if (inRecovery(primary)) throw new AssertionError("primary is in recovery");
            try (Statement s = primary.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS jc (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))");
            }
            try (PreparedStatement ps = primary.prepareStatement("INSERT INTO jc (id, v) VALUES (?, ?)")) {
                ps.setLong(1, key);
                ps.setLong(2, key * 2);
                if (ps.executeUpdate() != 1) throw new AssertionError("insert count");
            }
        }
        try (Connection standby = connect(hosts, "secondary")) {
            if (!inRecovery(standby)) throw new AssertionError("secondary is not in recovery");
            try (Statement s = standby.createStatement()) {
                s.executeUpdate("INSERT INTO jc (id, v) VALUES (" + (key + 1) + ", 1)");
                throw new AssertionError("a standby took a write");
            } catch (SQLException e) {
                if (!"25006".equals(e.getSQLState())) throw e;
            }
        }
        System.out.println("jdbc cluster ok");
    }
}
