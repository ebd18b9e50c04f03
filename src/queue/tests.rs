    use super::*;

    #[test]
    fn enqueue_twice_is_refused_and_positions_count_from_one() {
        let mut q: Queues<u32> = Queues::new(QueueConfig::default());
        let t0 = Instant::now();
        let name = QueueName::from("europe.refunds");
        assert_eq!(q.enqueue(t0, 1, name.clone(), "en"), Ok(1));
        assert_eq!(q.enqueue(t0, 2, name.clone(), "en"), Ok(2));
        assert_eq!(
            q.enqueue(t0, 1, name.clone(), "en"),
            Err(QueueError::AlreadyQueued)
        );
        assert_eq!((q.position(&2), q.waiting(&name)), (Some(2), 2));
    }
